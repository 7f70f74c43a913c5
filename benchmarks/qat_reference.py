"""Our Keras 3 QAT (`common.qat`) against tensorflow-model-optimization.

TFMOT only quantizes tf-keras (Keras 2) models, so the reference builds the
same network in tf-keras, wraps it with `tfmot.quantization.keras.
quantize_model`, and converts it with `TFLiteConverter.from_keras_model`.
Both start from the same float weights, fine-tune the same number of steps
on the same data, and are scored in LiteRT on the same test split. Printed:
one JSON object with accuracy, INT8 MAC share, requantize ops and file size
per method.

Needs the optional packages `tf-keras` (same minor version as TensorFlow)
and `tensorflow-model-optimization`:

    pip install "tf-keras~=2.21.0" "tensorflow-model-optimization>=0.8"
    python benchmarks/qat_reference.py [--epochs 15] [--qat-epochs 1]

Measured (2 shared CPU cores, TF 2.21, tfmot 0.8.1, defaults): test accuracy
float 98.0%, common.qat INT8 97.9%, tfmot INT8 97.9%, post-training INT8
98.0%; every MAC int8 and no requantize op in all three files; mean logit
error against float 0.072 (ours) vs 0.090 (tfmot) of the logits' spread
(both fine-tune away from float; post-training 0.011). With an unconverged
float model (--epochs 4) the QAT epoch is mostly extra training and the
numbers say more about the optimizers than about quantization.
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

import numpy as np  # noqa: E402


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


def describe(path, images, labels, float_logits):
    from common import litert, quant_report

    summary = quant_report.tflite_int8_summary(path)
    logits = np.asarray(litert.LiteRTModel(path)(images))
    return {
        "accuracy": float(np.mean(logits.argmax(-1) == labels)),
        # Mean |INT8 - float| logit error, in units of the float logits' spread.
        "logit_error": float(np.abs(logits - float_logits).mean() / float_logits.std()),
        "mac_share_int8": summary["mac_share_int8"],
        "requantize_ops": summary["requantize_ops"],
        "float_compute_ops": summary["float_compute_ops"],
        "bytes": os.path.getsize(path),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=1)
    args = parser.parse_args()

    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as error:
        sys.exit(f"{error}: install tf-keras and tensorflow-model-optimization "
                 "(see this file's docstring)")
    import keras
    import tensorflow as tf

    from common import export, qat

    keras.utils.set_random_seed(0)
    train_images, train_labels = make_data(0, 2048)
    test_images, test_labels = make_data(1, 512)
    train = tf.data.Dataset.from_tensor_slices((train_images, train_labels)).batch(32)
    loss = "sparse_categorical_crossentropy"

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

    results = {"float": {"accuracy": float_accuracy}}
    with tempfile.TemporaryDirectory(prefix="qat-reference-") as folder:
        # Ours: Keras 3 fake-quant clone.
        ours = qat.quantize_model(float_model)
        qat.calibrate(ours, train, steps=5)
        ours.compile(keras.optimizers.Adam(1e-4),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ours.fit(train, epochs=args.qat_epochs, verbose=0)
        path = os.path.join(folder, "ours.tflite")
        export.convert_to_tflite(ours, path, representative)
        results["common.qat"] = describe(path, test_images, test_labels, float_logits)

        # Post-training INT8 of the float model, for scale.
        path = os.path.join(folder, "ptq.tflite")
        export.convert_to_tflite(float_model, path, representative)
        results["post_training"] = describe(path, test_images, test_labels, float_logits)

        # Reference: the same network in tf-keras, weights copied by name.
        legacy_inputs = tf_keras.Input((16, 16, 3), name="image")
        legacy = tf_keras.Model(legacy_inputs, build(tf_keras.layers, legacy_inputs))
        for layer in legacy.layers:
            if layer.weights:
                layer.set_weights(float_model.get_layer(layer.name).get_weights())
        reference = tfmot.quantization.keras.quantize_model(legacy)
        reference.compile(tf_keras.optimizers.Adam(1e-4),
                          tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        reference.fit(train, epochs=args.qat_epochs, verbose=0)
        converter = tf.lite.TFLiteConverter.from_keras_model(reference)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        path = os.path.join(folder, "tfmot.tflite")
        with open(path, "wb") as handle:
            handle.write(converter.convert())
        results["tfmot"] = describe(path, test_images, test_labels, float_logits)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
