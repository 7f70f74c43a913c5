"""Segmentation configuration: U-Net options, data options and presets."""

import dataclasses

from common import config


@dataclasses.dataclass
class ModelOptions:
    # Filters of the first encoder level; each level below doubles them.
    filters: int = 16
    # Number of down-sampling levels (the U-Net paper uses 4).
    depth: int = 3
    # Encoder/decoder block: "conv" (two conv-BN-ReLU, as in the paper),
    # "residual" (ResNet basic block) or "separable" (MobileNet style).
    block: str = "conv"
    # A dilated (ASPP-like) block at the bottleneck widens the receptive field.
    dilated_bottleneck: bool = True
    activation: str = "relu"
    initializer: str = "he_normal"
    dropout: float = 0.0


@dataclasses.dataclass
class DataOptions(config.DataConfig):
    # Side of the square model input for the built-in and TFDS data, and for
    # a local folder whose images cannot keep their own size (see below).
    image_size: int = 64
    # A local folder whose images all share one square size up to this many
    # pixels trains at that size (rounded to a multiple of 2**model.depth)
    # instead of being resized to `image_size`: thin structures survive.
    # 0: always `image_size`.
    max_image_size: int = 128
    # Model input channels: 0 follows the data (1 when every image of a
    # local folder is greyscale, else 3); 1 or 3 forces it.
    channels: int = 0
    # "scale": pixel / 255. "standardize": each image to zero mean and unit
    # variance (tf.image.per_image_standardization), for data whose
    # brightness differs between images. "auto": standardize a local folder
    # whose training images' intensity statistics vary strongly, else scale.
    normalization: str = "auto"
    # Classes of a local folder; 0 reads `classes.txt` in the folder or counts
    # the largest mask value + 1.
    num_classes: int = 0
    # Mask value of "void" pixels (object borders in Pascal VOC): left out
    # of the loss and the metrics, never a class of its own. Must not be a
    # class index; -1 when no mask uses one.
    ignore_label: int = 255
    # Built-in data: most objects per image.
    max_objects: int = 3
    augment: bool = True


@dataclasses.dataclass
class Config(config.BaseConfig):
    task: str = "segmentation"
    model: ModelOptions = dataclasses.field(default_factory=ModelOptions)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)


PRESETS = {
    # Seconds on 2 CPU cores: proves the flow, not the quality.
    "smoke": {
        "data.image_size": 32, "data.num_train": 512, "data.num_val": 32,
        "data.num_test": 48, "data.augment": False, "model.filters": 8,
        "model.depth": 2, "train.epochs": 10, "train.batch_size": 8,
        "train.learning_rate": 1e-2, "qat.epochs": 1,
        "export.representative_samples": 32, "export.latency_samples": 5,
        # The per-layer INT8 error converts the model a second time: the
        # default preset reports it, the smoke run skips it.
        "export.debug_layers": False,
    },
    # The built-in demo: under 10 minutes on 2 CPU cores.
    "default": {
        "data.image_size": 64, "data.num_train": 1536, "data.num_val": 128,
        "data.num_test": 256, "model.filters": 12, "model.depth": 3,
        "train.epochs": 14, "train.batch_size": 16, "train.learning_rate": 3e-3,
        "train.early_stopping_patience": 0, "qat.epochs": 2, "qat.learning_rate": 2e-4,
        # A step budget: the built-in 1536 images make 96 steps an epoch and
        # pass it in their 14 epochs, while a folder of 65 images (52 to
        # train: 3 steps an epoch) trains 100 epochs, 300 steps instead of 42.
        "train.min_steps": 1000, "train.max_epochs": 100,
        # float32 even on CPUs with native bfloat16 (common/precision.py):
        # measured side by side, same seed, bfloat16 lost Dice (test float
        # 0.9207 -> 0.9146, QAT INT8 0.9223 -> 0.9054, post-training INT8
        # 0.9173 -> 0.9099; validation 0.933 -> 0.921) and its step gained
        # less than the convolutions do (1.3-1.5x; Keras's BatchNormalization
        # stays float32, 44% of the bfloat16 step; the QAT step 0.97x).
        "run.bfloat16_on_cpu": False,
    },
    # The paper's width and depth (64 filters, 4 poolings) on Oxford-IIIT Pet.
    "unet": {
        "data.source": "oxford_iiit_pet", "data.image_size": 256,
        "model.filters": 64, "model.depth": 4, "model.dilated_bottleneck": False,
        "train.epochs": 40, "train.batch_size": 16, "train.learning_rate": 1e-3,
        "train.warmup_epochs": 1, "qat.epochs": 3, "qat.learning_rate": 1e-4,
    },
}
