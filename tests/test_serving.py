"""common/serving.py: image sizes read from headers, and the request limits."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import serving

WIDTH, HEIGHT = 37, 23


def encoded_image(image_format, width=WIDTH, height=HEIGHT, mode="RGB"):
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


def png_header_claiming(width, height):
    """A PNG whose IHDR claims `width` x `height`; no pixel data follows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return serving.PNG_SIGNATURE + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))


def size_of(encoded):
    height, width, known = serving.image_size_from_header(tf.constant(encoded))
    return int(height), int(width), bool(known)


@pytest.mark.parametrize("image_format,mode", [
    ("PNG", "RGB"), ("PNG", "L"), ("JPEG", "RGB"), ("JPEG", "L"), ("GIF", "P"),
    ("BMP", "RGB"),
])
def test_size_from_header_matches_the_image(image_format, mode):
    assert size_of(encoded_image(image_format, mode=mode)) == (HEIGHT, WIDTH, True)


def test_progressive_jpeg_size():
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", progressive=True)
    assert size_of(buffer.getvalue()) == (HEIGHT, WIDTH, True)


def test_top_down_bmp_has_a_negative_height_in_its_header():
    encoded = bytearray(encoded_image("BMP"))
    encoded[22:26] = struct.pack("<i", -HEIGHT)
    assert size_of(bytes(encoded)) == (HEIGHT, WIDTH, True)


def test_size_of_a_png_claiming_more_than_int32_pixels():
    assert size_of(png_header_claiming(65_000, 70_000)) == (70_000, 65_000, True)


@pytest.mark.parametrize("encoded", [
    b"", b"hello, world", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\x00" * 100,
    b'{"instances": [1, 2, 3]}',
])
def test_bytes_that_are_not_an_image_are_unknown(encoded):
    assert size_of(encoded) == (0, 0, False)


def test_check_image_bytes_passes_an_image_within_the_limit():
    encoded = encoded_image("PNG")
    result = serving.check_image_bytes(tf.constant(encoded), max_pixels=WIDTH * HEIGHT)
    assert result.numpy() == encoded


def test_check_image_bytes_refuses_too_many_pixels_before_decoding():
    # The header alone: decoding it would fail, so passing the check through
    # to a decoder would give another error than this one.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image is 20000x20000 = 400000000 pixels; this model "
                             r"accepts at most 16777216 \(export.serving_max_pixels\)"):
        serving.check_image_bytes(tf.constant(png_header_claiming(20_000, 20_000)),
                                  max_pixels=4096 * 4096)


def test_check_image_bytes_refuses_one_pixel_over_the_limit():
    encoded = encoded_image("JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 850 "):
        serving.check_image_bytes(tf.constant(encoded), max_pixels=WIDTH * HEIGHT - 1)


def test_check_image_bytes_refuses_bytes_that_are_not_an_image():
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="not a PNG, JPEG, GIF or BMP image .received 12 bytes"):
        serving.check_image_bytes(tf.constant(b"hello, world"), max_pixels=100)


def test_checks_run_inside_a_tf_function_before_what_follows():
    @tf.function
    def decode(encoded):
        checked = serving.check_image_bytes(encoded, max_pixels=100)
        return tf.io.decode_image(checked, channels=3, expand_animations=False)

    # Without the control dependency, the decoder could fail first with
    # its own message.
    with pytest.raises(tf.errors.InvalidArgumentError, match="serving_max_pixels"):
        decode(tf.constant(png_header_claiming(20_000, 20_000)))
    assert decode(tf.constant(encoded_image("PNG", 10, 10))).shape == (10, 10, 3)
    # The GIF frame walk (a while loop inside a cond) runs in a graph too.
    assert decode(tf.constant(encoded_image("GIF", 10, 9, mode="P"))).shape == (9, 10, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="GIF has a frame of 10000 pixels"):
        decode(tf.constant(crafted_gif(5, [100])))


def test_check_pixels():
    images = tf.zeros([2, 10, 20, 3], tf.uint8)
    assert serving.check_pixels(images, max_pixels=200).shape == (2, 10, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"each image is 20x10 = 200 pixels; this model accepts at "
                             r"most 199 \(export.serving_max_pixels\)"):
        serving.check_pixels(images, max_pixels=199)


def test_check_batch():
    batch = tf.zeros([5, 2])
    assert serving.check_batch(batch, max_batch=5).shape == (5, 2)
    assert serving.check_batch(tf.zeros([0, 2]), max_batch=5).shape == (0, 2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"batch of 5 items; this model accepts at most 4 per "
                             r"request \(export.serving_max_batch\)"):
        serving.check_batch(batch, max_batch=4)


def test_check_text_names_the_first_text_over_the_limit():
    texts = tf.constant(["short", "x" * 11, "y" * 30])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"text 1 is 11 bytes long; this model accepts at most 10 "
                             r"bytes per text \(export.serving_max_text_bytes\)"):
        serving.check_text(texts, max_bytes=10)


def test_check_text_counts_utf8_bytes_not_characters():
    # Five characters, ten bytes.
    texts = tf.constant(["ééééé"])
    assert serving.check_text(texts, max_bytes=10).shape == (1,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="text 0 is 10 bytes"):
        serving.check_text(texts, max_bytes=9)


def test_check_text_accepts_an_empty_batch():
    assert serving.check_text(tf.constant([], tf.string), max_bytes=10).shape == (0,)


def test_check_shape():
    expected = ("batch", "height", "width", 3)
    images = tf.zeros([2, 5, 6, 3], tf.uint8)
    assert serving.check_shape(images, expected, "images").shape == (2, 5, 6, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"images: expected shape \(batch, height, width, 3\), "
                             r"received shape \[5 6 3\]"):
        serving.check_shape(tf.zeros([5, 6, 3]), expected, "images")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"received shape \[2 5 6 4\]"):
        serving.check_shape(tf.zeros([2, 5, 6, 4]), expected, "images")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes: expected shape \(1\), received shape \[2\]"):
        serving.check_shape(tf.constant(["a", "b"]), (1,), "image_bytes")


# --- Super-resolution tiling inside the graph ---------------------------------

def small_upscaler():
    """Two 3x3 convolutions (each output pixel sees 2 pixels around it),
    then x4 nearest: tiles overlapping by 2 or more give the whole-image
    result exactly."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(3, 3, padding="same")(inputs)
    x = keras.layers.Conv2D(3, 3, padding="same")(x)
    outputs = keras.layers.UpSampling2D(4)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("height,width", [(5, 7), (16, 16), (17, 40), (45, 23)])
def test_graph_tiling_equals_the_whole_image_pass(height, width):
    from tasks.super_resolution import tiling

    model = small_upscaler()
    image = np.random.default_rng(height).random((height, width, 3)).astype("float32")
    whole = model(image[None])[0].numpy()
    tiled = tf.function(lambda x: tiling.upscale_tiled_graph(
        model, x, tile=16, overlap=3, tiles_per_call=3))(tf.constant(image)).numpy()
    assert tiled.shape == (4 * height, 4 * width, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_graph_tiling_is_the_host_tiling():
    from tasks.super_resolution import tiling

    model = small_upscaler()
    image = np.random.default_rng(1).random((37, 50, 3)).astype("float32")
    # Overlap 1 < what the model sees: the seams differ from the whole
    # image, and must differ exactly as the host tiling's do.
    host = tiling.upscale_tiled(lambda tiles: model(tiles).numpy(), image, 16, 1)
    graph = tiling.upscale_tiled_graph(model, tf.constant(image), 16, 1).numpy()
    whole = model(image[None])[0].numpy()
    assert np.abs(graph - whole).max() > 1e-3
    np.testing.assert_allclose(graph, host, atol=1e-6)


def test_graph_tiling_converts_each_tile_with_finish():
    from tasks.super_resolution import tiling

    model = small_upscaler()
    image = np.random.default_rng(2).random((20, 30, 3)).astype("float32")
    def to_uint8(x):
        return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)

    tiled = tiling.upscale_tiled_graph(model, tf.constant(image), 16, 3, finish=to_uint8,
                                       output_dtype=tf.uint8)
    assert tiled.dtype == tf.uint8
    expected = to_uint8(model(image[None])[0]).numpy().astype(int)
    assert np.abs(tiled.numpy().astype(int) - expected).max() <= 1


# --- GIF frames ----------------------------------------------------------------

def crafted_gif(screen_side, frame_sides):
    """A GIF with a `screen_side` square screen and one tiny-data frame per
    entry of `frame_sides`, each claiming that square size."""
    screen = b"GIF89a" + struct.pack("<HHBBB", screen_side, screen_side, 0, 0, 0)
    frames = b""
    for side in frame_sides:
        # Graphic control extension, then the image descriptor, LZW code
        # size 2, one data sub-block of 1 byte and the terminator.
        frames += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"
        frames += b"\x2c" + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x01\x00\x00"
    return screen + frames + b"\x3b"


def test_gif_frame_pixels_of_an_animation():
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)).convert("P")
              for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    largest, total = serving.gif_frame_pixels(tf.constant(buffer.getvalue()))
    assert (int(largest), int(total)) == (WIDTH * HEIGHT, 3 * WIDTH * HEIGHT)
    checked = serving.check_image_bytes(tf.constant(buffer.getvalue()), max_pixels=WIDTH * HEIGHT)
    assert tf.io.decode_image(checked, expand_animations=False).shape == (HEIGHT, WIDTH, 3)


def test_crafted_gif_frames_are_walked():
    largest, total = serving.gif_frame_pixels(tf.constant(crafted_gif(10, [3, 20_000, 5])))
    assert (int(largest), int(total)) == (20_000 ** 2, 9 + 20_000 ** 2 + 25)


def test_check_image_bytes_refuses_a_gif_frame_larger_than_its_screen():
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="GIF has a frame of 400000000 pixels and 400000000 pixels in "
                             "all its frames; this model accepts at most 16777216 per frame"):
        serving.check_image_bytes(tf.constant(crafted_gif(10, [20_000])), 4096 * 4096)


def test_check_image_bytes_refuses_gif_frames_too_many_in_all():
    # Each frame within the limit (100 pixels), four of them over 3 x 100.
    serving.check_image_bytes(tf.constant(crafted_gif(10, [10] * 3)), max_pixels=100)
    with pytest.raises(tf.errors.InvalidArgumentError, match="400 pixels in all its frames"):
        serving.check_image_bytes(tf.constant(crafted_gif(10, [10] * 4)), max_pixels=100)
