"""Our Keras 3 QAT (`common.qat`) against tensorflow-model-optimization.

TFMOT only quantizes tf-keras (Keras 2) models, so the reference builds the
same network in tf-keras, copies the float weights by layer name, wraps it
with `tfmot.quantization.keras.quantize_model`, and converts it with
`TFLiteConverter.from_keras_model`. Both QATs start from the same float
weights, fine-tune with the same optimizer, learning rate and steps on the
same data (same seed), and are scored in LiteRT on the same test split,
next to the float and post-training INT8 files. Two networks:

- `classifier`: a small CNN on noise images with a faint colour cue
  (accuracy, mean logit error against float).
- `unet`: the segmentation task's U-Net ("conv" blocks, no dilated
  bottleneck: TFMOT has no rule for it) on the task's built-in synthetic
  shapes (`tasks/segmentation`, smoke-sized data), scored with the task's
  own Dice / IoU.

Printed: one JSON object (metric, INT8 MAC share, requantize ops, file size
and LiteRT batch-1 latency per file) and a markdown table.

Needs the optional packages `tf-keras` (same minor version as TensorFlow)
and `tensorflow-model-optimization` (the `reference` extra). TFMOT 0.8.1
pins absl-py 1.x, which would downgrade the absl-py TensorFlow 2.21 brings;
a separate virtual environment that sees the main one avoids that:

    python -m venv /tmp/refvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/refvenv/lib/python3.11/site-packages/main.pth
    /tmp/refvenv/bin/pip install --no-deps "tf-keras~=2.21.0" "tensorflow-model-optimization==0.8.1"
    /tmp/refvenv/bin/python benchmarks/qat_reference.py [--model unet] [--json out.json]

Measured (2 shared CPU cores, TF 2.21, tfmot 0.8.1, defaults; the JSON is
benchmarks/results/qat_reference.json):

- classifier: test accuracy float 98.0%, common.qat INT8 97.9%, tfmot INT8
  97.9%, post-training INT8 98.0%; every MAC int8 and no requantize op in
  all three files.
- unet (32x32 synthetic shapes, 8 filters, depth 2): Dice float 0.447,
  common.qat 0.443, tfmot 0.442, post-training 0.439; every MAC int8;
  requantize ops 0 (ours), 2 (tfmot), 0 (post-training); 46 / 44 / 45 KB.

Latencies of such small files are tens to hundreds of microseconds and move
with the machine's load; read them side by side, not as absolutes. With an
unconverged float model (--epochs 4) the QAT epoch is mostly extra training
and the numbers say more about the optimizers than about quantization.
"""

import argparse
import json
import os
import sys
import tempfile

# tfmot reads tf.keras: point it at tf-keras before TensorFlow is imported.
# Our own code imports Keras 3 as `keras` and is not affected.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np


def make_data(seed, count):
    """Noise images whose class is a faint brighter colour channel (hard
    enough that float stays below 100%, so quantization error shows)."""
    rng = np.random.default_rng(seed)
    images = rng.random((count, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 3, count)
    images[np.arange(count), :, :, labels] += 0.06
    return images, labels.astype("int32")


def build(layers_module, inputs):
    """The same small CNN in Keras 3 or tf-keras (same layer names)."""
    x = layers_module.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = layers_module.BatchNormalization(name="bn1")(x)
    x = layers_module.ReLU(name="relu1")(x)
    x = layers_module.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers_module.BatchNormalization(name="bn2")(x)
    x = layers_module.ReLU(name="relu2")(x)
    x = layers_module.Conv2D(32, 1, name="pointwise")(x)
    x = layers_module.ReLU(name="relu3")(x)
    x = layers_module.GlobalAveragePooling2D(name="pool")(x)
    return layers_module.Dense(3, name="logits")(x)


def file_facts(path):
    """INT8 share of multiply-accumulates, requantize ops, bytes of one file."""
    from common import quant_report

    summary = quant_report.tflite_int8_summary(path)
    return {"mac_share_int8": summary["mac_share_int8"],
            "requantize_ops": summary["requantize_ops"],
            "float_compute_ops": summary["float_compute_ops"],
            "bytes": os.path.getsize(path)}


def describe(path, images, labels, float_logits):
    from common import litert

    logits = np.asarray(litert.LiteRTModel(path)(images))
    facts = file_facts(path)
    facts["accuracy"] = float(np.mean(logits.argmax(-1) == labels))
    # Mean |INT8 - float| logit error, in units of the float logits' spread.
    facts["logit_error"] = float(np.abs(logits - float_logits).mean() / float_logits.std())
    return facts


def latencies(paths, example, rounds=5, calls_per_round=20):
    """Median batch-1 LiteRT milliseconds per file, 2 threads; rounds
    interleave the files so each sees the same machine load."""
    from common import litert

    runners = {name: litert.LiteRTModel(path, num_threads=2) for name, path in paths.items()}
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            samples[name].append(runner.median_latency_ms(example, repeats=calls_per_round))
    return {name: float(np.median(values)) for name, values in samples.items()}


def convert_tfmot(reference, representative, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(reference)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with open(path, "wb") as handle:
        handle.write(converter.convert())


def copy_weights_by_name(source, target):
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def classifier_benchmark(args, folder):
    import keras
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from common import export, qat

    keras.utils.set_random_seed(0)
    train_images, train_labels = make_data(0, 2048)
    test_images, test_labels = make_data(1, 512)
    train = tf.data.Dataset.from_tensor_slices((train_images, train_labels)).batch(32)

    # Float model (Keras 3), trained once; both QATs start from its weights.
    inputs = keras.Input((16, 16, 3), name="image")
    float_model = keras.Model(inputs, build(keras.layers, inputs))
    float_model.compile(keras.optimizers.Adam(1e-3),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
    float_model.fit(train, epochs=args.epochs, verbose=0)
    float_logits = float_model.predict(test_images, verbose=0)
    float_accuracy = float(np.mean(float_logits.argmax(-1) == test_labels))

    def representative():
        for image in train_images[:200]:
            yield [image[None]]

    paths = {name: os.path.join(folder, f"classifier_{name}.tflite")
             for name in ("float", "post_training", "common.qat", "tfmot")}
    export.convert_to_tflite(float_model, paths["float"])
    results = {"float": dict(file_facts(paths["float"]), accuracy=float_accuracy)}
    # Ours: Keras 3 fake-quant clone.
    ours = qat.quantize_model(float_model)
    qat.calibrate(ours, train, steps=5)
    ours.compile(keras.optimizers.Adam(1e-4),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ours.fit(train, epochs=args.qat_epochs, verbose=0)
    export.convert_to_tflite(ours, paths["common.qat"], representative)
    results["common.qat"] = describe(paths["common.qat"], test_images, test_labels,
                                     float_logits)
    # Post-training INT8 of the float model, for scale.
    export.convert_to_tflite(float_model, paths["post_training"], representative)
    results["post_training"] = describe(paths["post_training"], test_images, test_labels,
                                        float_logits)
    # Reference: the same network in tf-keras, weights copied by name.
    legacy_inputs = tf_keras.Input((16, 16, 3), name="image")
    legacy = tf_keras.Model(legacy_inputs, build(tf_keras.layers, legacy_inputs))
    copy_weights_by_name(float_model, legacy)
    reference = tfmot.quantization.keras.quantize_model(legacy)
    reference.compile(tf_keras.optimizers.Adam(1e-4),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reference.fit(train, epochs=args.qat_epochs, verbose=0)
    convert_tfmot(reference, representative, paths["tfmot"])
    results["tfmot"] = describe(paths["tfmot"], test_images, test_labels, float_logits)
    for name, value in latencies(paths, test_images[:1]).items():
        results[name]["latency_ms"] = value
    return {"metric": "accuracy", "epochs": args.epochs, "qat_epochs": args.qat_epochs,
            "qat_learning_rate": 1e-4, "results": results}


# --- the segmentation U-Net ---------------------------------------------------

def build_unet(layers_module, inputs, filters, depth, num_classes):
    """tasks/segmentation's U-Net with "conv" blocks (conv-BN-ReLU twice per
    stage, 1x1 conv after each upsampling, concatenated skips), no dilated
    bottleneck, in Keras 3 or tf-keras (same layer names)."""
    def conv_bn_relu(x, channels, kernel_size, name):
        x = layers_module.Conv2D(channels, kernel_size, padding="same", use_bias=False,
                                 kernel_initializer="he_normal", name=f"{name}_conv")(x)
        x = layers_module.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers_module.ReLU(name=f"{name}_act")(x)

    def stage(x, channels, name):
        return conv_bn_relu(conv_bn_relu(x, channels, 3, f"{name}_1"), channels, 3,
                            f"{name}_2")

    x, skips = inputs, []
    for level in range(depth):
        x = stage(x, filters * 2 ** level, f"encoder{level}")
        skips.append(x)
        x = layers_module.MaxPooling2D(name=f"encoder{level}_pool")(x)
    x = stage(x, filters * 2 ** depth, "bottleneck")
    for level in reversed(range(depth)):
        x = layers_module.UpSampling2D(name=f"decoder{level}_up")(x)
        x = conv_bn_relu(x, filters * 2 ** level, 1, f"decoder{level}_reduce")
        x = layers_module.Concatenate(name=f"decoder{level}_concat")([x, skips[level]])
        x = stage(x, filters * 2 ** level, f"decoder{level}")
    return layers_module.Conv2D(num_classes, 1, name="logits")(x)


def unet_benchmark(args, folder):
    import keras
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from common import config as config_lib
    from common import export, litert, qat
    from tasks import segmentation
    from tasks.segmentation import metrics

    cfg = config_lib.from_preset(segmentation.Config, segmentation.PRESETS, "smoke")
    config_lib.apply_overrides(cfg, {"data.num_train": 1024, "data.num_val": 64,
                                     "data.num_test": 256, "train.batch_size": 16})
    keras.utils.set_random_seed(cfg.run.seed)
    splits = segmentation.build_datasets(cfg)
    info = splits.info
    size, filters, depth = cfg.data.image_size, cfg.model.filters, cfg.model.depth
    steps = sum(1 for _ in splits.train)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.unet_learning_rate, steps * args.unet_epochs, alpha=0.01)
    # The fine-tunes continue where the float schedule ended (common.pipeline).
    qat_learning_rate = args.unet_learning_rate * 0.01

    inputs = keras.Input((size, size, 3), name="image")
    float_model = keras.Model(inputs, build_unet(keras.layers, inputs, filters, depth,
                                                 info["num_classes"]))
    float_model.compile(keras.optimizers.Adam(schedule),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    float_model.fit(splits.train, epochs=args.unet_epochs, verbose=0)

    def representative():
        produced = 0
        for images, _ in splits.train:
            for image in images.numpy():
                if produced == 64:
                    return
                produced += 1
                yield [image[None]]

    def scored(predict_fn):
        values = metrics.score(predict_fn, splits.test, info)
        return {"dice": float(values["dice"]), "mean_iou": float(values["mean_iou"])}

    paths = {name: os.path.join(folder, f"unet_{name}.tflite")
             for name in ("float", "post_training", "common.qat", "tfmot")}
    results = {"float_keras": scored(lambda images: float_model.predict(images, verbose=0))}
    export.convert_to_tflite(float_model, paths["float"])
    export.convert_to_tflite(float_model, paths["post_training"], representative)

    ours = qat.quantize_model(float_model)
    qat.freeze_batch_norm(ours)
    qat.calibrate(ours, splits.train, steps=5)
    ours.compile(keras.optimizers.Adam(qat_learning_rate),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ours.fit(splits.train, epochs=args.qat_epochs, verbose=0)
    export.convert_to_tflite(ours, paths["common.qat"], representative)

    legacy_inputs = tf_keras.Input((size, size, 3), name="image")
    legacy = tf_keras.Model(legacy_inputs, build_unet(
        tf_keras.layers, legacy_inputs, filters, depth, info["num_classes"]))
    copy_weights_by_name(float_model, legacy)
    reference = tfmot.quantization.keras.quantize_model(legacy)
    reference.compile(tf_keras.optimizers.Adam(qat_learning_rate),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    reference.fit(splits.train, epochs=args.qat_epochs, verbose=0)
    convert_tfmot(reference, representative, paths["tfmot"])

    for name, path in paths.items():
        results[name] = dict(file_facts(path), **scored(litert.LiteRTModel(path)))
    example = next(iter(splits.test))[0].numpy()[:1]
    for name, value in latencies(paths, example).items():
        results[name]["latency_ms"] = value
    return {"metric": "dice", "data": f"tasks/segmentation synthetic, {size}x{size}, "
            f"{cfg.data.num_train} train / {cfg.data.num_test} test images",
            "filters": filters, "depth": depth, "epochs": args.unet_epochs,
            "qat_epochs": args.qat_epochs, "learning_rate": args.unet_learning_rate,
            "qat_learning_rate": qat_learning_rate, "results": results}


def markdown(name, benchmark):
    metric = benchmark["metric"]
    lines = [f"{name} ({metric}; latency: LiteRT batch 1, 2 threads, median)", "",
             f"| file | {metric} | int8 MAC share | requantize ops | size (KB) | latency (ms) |",
             "|---|---|---|---|---|---|"]
    for key, values in benchmark["results"].items():
        if "bytes" not in values:
            continue
        lines.append(
            f"| {key} | {values[metric]:.4f} | {values['mac_share_int8']:.2f} | "
            f"{values['requantize_ops']} | {values['bytes'] / 1024:.1f} | "
            f"{values.get('latency_ms', float('nan')):.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("classifier", "unet", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=15, help="classifier float epochs")
    parser.add_argument("--unet-epochs", type=int, default=10)
    parser.add_argument("--unet-learning-rate", type=float, default=1e-2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()

    try:
        import tensorflow_model_optimization  # noqa: F401
        import tf_keras  # noqa: F401
    except ImportError as error:
        sys.exit(f"{error}: install tf-keras and tensorflow-model-optimization "
                 "(see this file's docstring)")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    output = {"tensorflow": tf.__version__, "tfmot": tfmot.__version__}
    benchmarks = {"classifier": classifier_benchmark, "unet": unet_benchmark}
    chosen = list(benchmarks) if args.model == "all" else [args.model]
    with tempfile.TemporaryDirectory(prefix="qat-reference-") as folder:
        for name in chosen:
            output[name] = benchmarks[name](args, folder)
    text = json.dumps(output, indent=2)
    print(text)
    for name in chosen:
        print("\n" + markdown(name, output[name]))
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
