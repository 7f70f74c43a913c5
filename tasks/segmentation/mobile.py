"""The segmentation model for MediaPipe's ImageSegmenter.

    python -m tasks.segmentation.export runs/segmentation-default/model_qat.keras --mobile

The file is the QAT INT8 U-Net with float edges: MediaPipe hands the model
float pixels normalised with the metadata's mean and standard deviation
(0 and 255: pixel / 255, as in training) and reads float logits (1, H, W,
classes); the metadata names the classes (a label file) and says the scores
are logits (softmax activation), so `confidence_masks` are probabilities and
`category_mask` the arg-max class.
"""

import keras
import numpy as np

from common import mobile
from common.errors import UserError

FILE_NAME = "model_mobile.tflite"
# ITU-R BT.601 luma, what tf.image.rgb_to_grayscale uses (the training path).
_GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def mobile_edge(qat_model, info):
    """A Keras model taking RGB in [0, 1] (what MediaPipe gives after the
    metadata's normalisation) around the QAT model.

    RGB models are used as they are. A greyscale model gets the RGB -> grey
    step inside the graph (MediaPipe always hands over three channels).
    """
    normalization = info.get("normalization", "scale")
    if normalization != "scale":
        # Per-image standardization has no fixed mean/std MediaPipe could apply.
        raise UserError(
            f"segmentation mobile export: data normalization {normalization!r} "
            "(per-image standardization) is not supported yet; MediaPipe's "
            "ImageSegmenter only applies a fixed mean/std. Train with "
            "--set data.normalization=scale for a mobile file")
    channels = int(qat_model.inputs[0].shape[-1])
    if channels == 3:
        return qat_model
    if channels != 1:
        raise UserError(f"segmentation mobile export: the model takes {channels} "
                        "channels; MediaPipe hands over RGB (3) images")
    size = tuple(qat_model.inputs[0].shape[1:3])
    rgb = keras.Input(size + (3,), name="image")
    grey = keras.ops.sum(rgb * np.asarray(_GREY_WEIGHTS, np.float32), axis=-1, keepdims=True)
    return keras.Model(rgb, qat_model(grey), name="unet_rgb")


def _rgb_representative(representative_dataset, channels):
    """The INT8 calibration examples as RGB (grey repeated to three channels,
    whose luma is the grey value again)."""
    if channels == 3:
        return representative_dataset

    def generator():
        for example in representative_dataset():
            yield [np.repeat(np.asarray(example[0]), 3, axis=-1)]
    return generator


def export_mobile(qat_model, info, path, representative_dataset):
    """Write the ImageSegmenter file at `path`; returns its metadata as JSON.

    `representative_dataset` is the INT8 export's calibration generator (the
    QAT model's ranges come from training; calibration only fixes the edges).
    """
    num_classes = int(qat_model.outputs[0].shape[-1])
    # Checked before converting: a label file that does not match is an error.
    writer_module = mobile.writer_module("image_segmenter")
    labels = mobile.labels_for_outputs(info.get("class_names"), num_classes,
                                       "segmentation mobile export")
    channels = int(qat_model.inputs[0].shape[-1])
    edge = mobile_edge(qat_model, info)
    flatbuffer = mobile.convert_float_edges(
        edge, _rgb_representative(representative_dataset, channels))
    return mobile.write_populated(writer_module.MetadataWriter.create(
        bytearray(flatbuffer), input_norm_mean=[0.0], input_norm_std=[255.0],
        labels=labels, activation=writer_module.Activation.SOFTMAX), path)


class MediaPipeSegmenter:
    """The mobile file run by MediaPipe's ImageSegmenter, as a predict_fn:
    float RGB images in [0, 1] (N, H, W, 3) -> class maps (N, H, W).

    Images go in as uint8 pixels (what a phone camera gives), so a float
    input that is not a multiple of 1/255 is rounded first.
    """

    def __init__(self, path):
        mobile.require_mediapipe()
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options

        options = vision.ImageSegmenterOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(path)),
            output_category_mask=True, output_confidence_masks=False)
        self.segmenter = vision.ImageSegmenter.create_from_options(options)
        self.labels = list(self.segmenter.labels)

    def segment(self, pixels):
        """One uint8 RGB image (H, W, 3) -> its class map (H, W)."""
        result = self.segmenter.segment(mobile.mediapipe_image(pixels))
        # A copy: the view points into MediaPipe's buffer, reused by the next call.
        return np.array(result.category_mask.numpy_view(), copy=True).reshape(pixels.shape[:2])

    def __call__(self, images):
        images = np.asarray(images)
        if images.shape[-1] == 1:  # a greyscale run: MediaPipe takes RGB
            images = np.repeat(images, 3, axis=-1)
        pixels = mobile.to_uint8_pixels(images)
        return np.stack([self.segment(image) for image in pixels]).astype(np.int32)

    def close(self):
        self.segmenter.close()


def predict_fn(path, info=None):
    """A predict_fn for `metrics.score` that runs the file through MediaPipe
    (call `.close()` when done)."""
    return MediaPipeSegmenter(path)


def scoring_dataset(splits, cfg):
    """What the MediaPipe predict_fn is scored on: the usual test split
    (images in [0, 1], sent to MediaPipe as uint8 pixels)."""
    return splits.test
