"""Configuration of ESRGAN x4 super-resolution: model, data, the GAN stage.

Training hyperparameters of the PSNR-oriented stage live in `train.*` (the
shared `TrainConfig`); the adversarial stage has its own section `gan.*`
so a preset or `--set` names exactly which stage it changes.
"""

import dataclasses
from typing import Optional

from common.config import BaseConfig, DataConfig


@dataclasses.dataclass
class ModelConfig:
    """RRDB generator (ESRGAN, Wang et al. 2018) and its VGG-style critic."""

    # Residual-in-residual dense blocks in the trunk (paper: 23).
    num_blocks: int = 3
    # Feature channels of the trunk (paper: 64).
    features: int = 32
    # Channels each dense-block convolution adds (paper: 32).
    growth: int = 16
    # Residual scaling inside the dense and RRDB blocks (paper: 0.2).
    residual_scale: float = 0.2
    # x4 by two nearest x2 upsamplings + conv (ESRGAN); converts to LiteRT INT8.
    scale: int = 4
    # Add an interpolated copy of the input to the output so the network only
    # learns the missing detail: "none" (as in the paper), "bilinear" or
    # "nearest". Converges much faster on a CPU budget.
    global_skip: str = "bilinear"
    # Discriminator: first-layer channels (paper: 64), doubled per stage up to 8x.
    discriminator_features: int = 64
    # LR tile the edge (.tflite) model takes; predict tiles larger images.
    tile_size: int = 64
    # LR pixels each tile overlaps its neighbours by, when tiling.
    tile_overlap: int = 16


@dataclasses.dataclass
class SRDataConfig(DataConfig):
    """Built-in photographs, `div2k` from TFDS, or a folder of HR images."""

    # "builtin" (scikit-image photographs), "div2k" (TFDS) or a folder path.
    source: str = "builtin"
    # HR training crop; the LR input is hr_patch_size / scale (paper: 128).
    hr_patch_size: int = 96
    # Random HR crops drawn per training epoch.
    num_train: int = 1024
    # Random edge-tile crops (model.tile_size LR) per QAT epoch, and their
    # batch size; the float stages use hr_patch_size crops instead.
    num_tile_crops: int = 160
    tile_batch_size: int = 4
    # Cap on validation / test tiles (None: all of them).
    num_val: Optional[int] = 32
    num_test: Optional[int] = None
    # Folders: the share of images held out for validation and for test.
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    tfds_data_dir: str = ""


@dataclasses.dataclass
class GANConfig:
    """The adversarial stage, started from the PSNR-stage generator."""

    # 0 skips the stage (the PSNR-oriented generator is the result).
    epochs: int = 1
    steps_per_epoch: Optional[int] = 60
    batch_size: int = 8
    generator_learning_rate: float = 1e-4
    discriminator_learning_rate: float = 1e-4
    # "ragan" (relativistic average GAN, as in ESRGAN) or "wgan_gp".
    loss: str = "ragan"
    adversarial_weight: float = 5e-3
    # None: 1e-2 with the perceptual loss (paper), 1.0 without it (an L1
    # anchor keeps a short, VGG-less GAN stage from drifting off the image).
    l1_weight: Optional[float] = None
    perceptual_weight: float = 1.0
    # VGG19 weights file (.h5, Keras applications "notop" weights); "" runs
    # the stage without the perceptual loss, and the log says so.
    vgg_weights: str = ""
    gradient_penalty_weight: float = 10.0
    # Which generator goes to QAT and export: "psnr" or "gan" (stages.py says
    # why "psnr" is the default).
    export: str = "psnr"


@dataclasses.dataclass
class Config(BaseConfig):
    task: str = "super_resolution"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: SRDataConfig = dataclasses.field(default_factory=SRDataConfig)
    gan: GANConfig = dataclasses.field(default_factory=GANConfig)


PRESETS = {
    # Seconds on 2 CPU cores: a couple of dozen steps per stage.
    "smoke": {
        "model.num_blocks": 1, "model.features": 8, "model.growth": 8,
        "model.discriminator_features": 8, "model.tile_size": 32,
        "model.tile_overlap": 8,
        "data.hr_patch_size": 64, "data.num_train": 64, "data.num_val": 4,
        "data.num_test": 8, "data.num_tile_crops": 16,
        "train.epochs": 1, "train.batch_size": 8, "train.learning_rate": 1e-3,
        "gan.epochs": 1, "gan.steps_per_epoch": 4, "gan.batch_size": 4,
        "qat.epochs": 1, "qat.steps_per_epoch": 4,
        "export.representative_samples": 8, "export.latency_samples": 3,
        "export.debug_layers": False,  # a second conversion; the default has it
    },
    # The built-in demo: CPU-sized generator, PSNR stage then a short GAN stage.
    "default": {
        "train.epochs": 20, "train.batch_size": 16, "train.learning_rate": 2e-3,
        "train.schedule": "cosine",
        "qat.epochs": 1, "qat.steps_per_epoch": 40, "qat.learning_rate": 5e-5,
        "export.representative_samples": 64, "export.latency_samples": 20,
        # bfloat16 on CPUs that multiply it natively (common/precision.py;
        # float32 elsewhere, exports float32 either way). The generator
        # (convolutions, no BatchNormalization) steps 1.87x faster in
        # bfloat16 (2759 -> 1475 ms, CPU time 1.90x;
        # benchmarks/bfloat16_profile.py) and keeps its quality: same seed, 4
        # of 20 epochs, no GAN stage, float32 vs bfloat16: validation PSNR-Y
        # 25.90 vs 25.96 dB, test 30.10 vs 30.15 (LiteRT float), QAT INT8
        # 30.10 vs 30.13, post-training INT8 30.08 vs 30.13. That run was not
        # faster as a whole (bfloat16 21.9 min, float32 21.0): its float stage
        # gained only 5% (368 vs 386 s) and QAT lost (371 vs 304 s). QAT now
        # fine-tunes a float32 copy (pipeline.train_qat), and the GAN stage
        # trains in bfloat16 since common/gan.py adds its losses in float32.
        # The whole default run has not been timed again on a native-bfloat16
        # CPU since: expect a few percent, not the step's 1.87x.
        "run.bfloat16_on_cpu": True,
    },
    # The paper's generator: 23 RRDBs, 64 features, growth 32, 128 HR crops.
    "esrgan": {
        "model.num_blocks": 23, "model.features": 64, "model.growth": 32,
        "model.global_skip": "none", "model.tile_size": 64,
        "data.hr_patch_size": 128, "data.num_train": 16000,
        "train.epochs": 100, "train.batch_size": 16, "train.learning_rate": 2e-4,
        "gan.epochs": 50, "gan.steps_per_epoch": 1000, "gan.batch_size": 16,
    },
}
