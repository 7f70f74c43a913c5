"""Graph-side input limits shared by every task's SavedModel signatures.

One request must not be able to exhaust the server. Every serving function
runs these checks before the expensive work:

- `check_shape`: the rank and fixed sizes of an input declared with
  `request_spec` (the runtime checks the dtype, not the shape);
- `check_batch`: at most `export.serving_max_batch` items per request;
- `check_pixels`: at most `export.serving_max_pixels` pixels per image;
- `check_image_bytes`: the same pixel limit for encoded images, read from
  the file's header (PNG IHDR, JPEG SOF, GIF logical screen, BMP info
  header) *before* decoding, so a 1 MB PNG that claims 20000 x 20000 pixels
  is refused instead of being decoded into gigabytes (for a GIF, every
  frame's size too); bytes that are not a PNG, JPEG, GIF or BMP are
  refused as well;
- `check_text`: at most `export.serving_max_text_bytes` UTF-8 bytes per text.

A check that fails raises `tf.errors.InvalidArgumentError` (TF Serving
answers it as INVALID_ARGUMENT) whose message names the value received, the
limit and the config key that sets it. Each check returns its input tied to
the assertion by a control dependency: code that uses the returned tensor
cannot run before the check has passed (TensorFlow would otherwise be free
to start decoding in parallel with the assertion).

Only core TensorFlow ops are used, so stock TF Serving runs them.
"""

import tensorflow as tf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
BMP_SIGNATURE = b"BM"
GIF_IMAGE_DESCRIPTOR, GIF_EXTENSION = 0x2C, 0x21
# giflib holds every frame at one byte per pixel: all frames together may
# take as many bytes as the largest RGB image allowed (3 bytes per pixel).
GIF_TOTAL_PIXELS_PER_ALLOWED_PIXEL = 3
# Bytes read from the start of a file: enough for every header below.
HEADER_BYTES = 32
# Shortest file whose header holds its size, per format.
PNG_MIN_BYTES = 24   # signature (8) + IHDR length and type (8) + width, height (8)
GIF_MIN_BYTES = 10   # signature (6) + width, height (4)
BMP_MIN_BYTES = 26   # file header (14) + info header size (4) + width, height (8)
JPEG_MIN_BYTES = 4   # the JPEG parser itself checks the rest


def _header(encoded):
    """The first HEADER_BYTES bytes of scalar string `encoded` as uint8,
    zero-padded when the string is shorter (so reading never fails)."""
    start = tf.strings.substr(encoded, 0, HEADER_BYTES)
    padded = tf.strings.join([start, b"\x00" * HEADER_BYTES])
    return tf.io.decode_raw(tf.strings.substr(padded, 0, HEADER_BYTES), tf.uint8)


def _starts_with(header, signature, offset=0):
    expected = tf.constant(list(signature), tf.uint8)
    return tf.reduce_all(tf.equal(header[offset:offset + len(signature)], expected))


def _unsigned(header, offset, length, big_endian):
    """An unsigned integer of `length` bytes at `offset`, as int64."""
    value = tf.constant(0, tf.int64)
    order = range(length) if big_endian else reversed(range(length))
    for index in order:
        value = value * 256 + tf.cast(header[offset + index], tf.int64)
    return value


def _signed_32_little_endian(header, offset):
    value = _unsigned(header, offset, 4, big_endian=False)
    return tf.where(value >= 2 ** 31, value - 2 ** 32, value)


def _formats(encoded, header):
    """(is_png, is_jpeg, is_gif, is_bmp) of scalar string `encoded`."""
    length = tf.strings.length(encoded)
    is_png = (length >= PNG_MIN_BYTES) & _starts_with(header, PNG_SIGNATURE) \
        & _starts_with(header, b"IHDR", offset=12)
    is_jpeg = (length >= JPEG_MIN_BYTES) & _starts_with(header, JPEG_SIGNATURE)
    is_gif = (length >= GIF_MIN_BYTES) & (
        _starts_with(header, GIF_SIGNATURES[0]) | _starts_with(header, GIF_SIGNATURES[1]))
    is_bmp = (length >= BMP_MIN_BYTES) & _starts_with(header, BMP_SIGNATURE)
    return is_png, is_jpeg, is_gif, is_bmp


def _bytes_at(encoded, length, position, count):
    """`count` bytes of `encoded` from `position` as int64, zero-padded
    past the end (so reading never fails)."""
    position = tf.minimum(tf.cast(position, tf.int64), length)
    piece = tf.strings.substr(encoded, position, tf.constant(count, tf.int64))
    padded = tf.strings.join([piece, b"\x00" * count])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, count), tf.uint8), tf.int64)


def _color_table_bytes(flags):
    """Size of the colour table that a GIF flags byte announces."""
    return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)


def gif_frame_pixels(encoded):
    """(largest frame, all frames) pixel counts of a GIF, int64 scalars.

    giflib reads every frame of a GIF, each into a buffer of the size its
    own image descriptor gives (not the logical screen's), before TF keeps
    the first; so a small file could still claim huge frames. This walks
    the blocks (image descriptors, extensions, and the 1-255 byte data
    sub-blocks in between) in a `tf.while_loop`, one sub-block per step:
    about a second for 1 MB of GIF on a 2-core CPU, paid only by GIFs.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    screen_flags = _bytes_at(encoded, length, 10, 1)[0]
    first_block = 13 + _color_table_bytes(screen_flags)

    def step(position, in_sub_blocks, largest, total):
        field = _bytes_at(encoded, length, position, 10)
        kind = field[0]
        is_image = tf.logical_not(in_sub_blocks) & tf.equal(kind, GIF_IMAGE_DESCRIPTOR)
        is_extension = tf.logical_not(in_sub_blocks) & tf.equal(kind, GIF_EXTENSION)
        pixels = tf.where(is_image, (field[5] + 256 * field[6]) * (field[7] + 256 * field[8]),
                          tf.constant(0, tf.int64))
        # A sub-block is a size byte and that many bytes; size 0 ends them.
        # An image descriptor is 10 bytes, its colour table, the LZW code
        # size byte, then sub-blocks; an extension is 2 bytes, then
        # sub-blocks; anything else (the trailer) ends the walk.
        next_position = tf.where(
            in_sub_blocks, position + 1 + kind,
            tf.where(is_image, position + 11 + _color_table_bytes(field[9]),
                     tf.where(is_extension, position + 2, length)))
        still_in_sub_blocks = tf.where(in_sub_blocks, kind > 0, is_image | is_extension)
        return (next_position, still_in_sub_blocks, tf.maximum(largest, pixels),
                total + pixels)

    zero = tf.constant(0, tf.int64)
    _, _, largest, total = tf.while_loop(
        lambda position, *_: position < length, step,
        (first_block, tf.constant(False), zero, zero))
    return largest, total


def image_size_from_header(encoded):
    """(height, width, known) of one encoded image, read from its header.

    `encoded` is a scalar string. Returns int64 scalars `height`, `width`
    and a bool `known` that is False when the bytes are not a PNG, JPEG, GIF
    or BMP (height and width are then 0). A JPEG whose header is broken
    raises InvalidArgumentError from `tf.io.extract_jpeg_shape`.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    header = _header(encoded)
    is_png, is_jpeg, is_gif, is_bmp = _formats(encoded, header)

    # PNG: IHDR holds width then height, 4 bytes big-endian each.
    png_size = (_unsigned(header, 20, 4, True), _unsigned(header, 16, 4, True))
    # GIF: the logical screen, the canvas TF decodes frames into; 2 bytes
    # little-endian each, width first. The frames' own sizes are checked
    # by `check_image_bytes` (see `gif_frame_pixels`).
    gif_size = (_unsigned(header, 8, 2, False), _unsigned(header, 6, 2, False))
    # BMP: signed 4-byte little-endian, where TF's decoder reads them; a
    # negative height means top-down rows.
    bmp_size = (tf.abs(_signed_32_little_endian(header, 22)),
                tf.abs(_signed_32_little_endian(header, 18)))

    def jpeg_size():
        # Parses the markers up to the frame header; decodes no pixels.
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    def zero_size():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    # Only the JPEG parser can fail, so only it sits behind a branch.
    height, width = tf.cond(is_jpeg, jpeg_size, zero_size)
    for is_format, (format_height, format_width) in (
            (is_png, png_size), (is_gif, gif_size), (is_bmp, bmp_size)):
        height = tf.where(is_format, format_height, height)
        width = tf.where(is_format, format_width, width)
    known = is_png | is_jpeg | is_gif | is_bmp
    return height, width, known


def _pixel_assertion(height, width, max_pixels, what):
    """An Assert op: height * width <= max_pixels, else a message naming both."""
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    pixels = height * width
    message = tf.strings.format(
        what + " is {}x{} = {} pixels; this model accepts at most {} "
        "(export.serving_max_pixels)", (width, height, pixels, max_pixels))
    return tf.debugging.Assert(pixels <= max_pixels, [message], name="check_pixels")


def check_image_bytes(encoded, max_pixels):
    """Refuse one encoded image (scalar string) that is not a PNG, JPEG, GIF
    or BMP, or whose header gives more than `max_pixels` pixels.

    Returns `encoded`, to be decoded only after the checks have passed.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    height, width, known = image_size_from_header(encoded)
    first_bytes = tf.strings.substr(encoded, 0, 8)
    not_image = tf.strings.format(
        "image bytes are not a PNG, JPEG, GIF or BMP image (received {} bytes "
        "starting with {})", (tf.strings.length(encoded), first_bytes))
    format_check = tf.debugging.Assert(known, [not_image], name="check_image_format")
    with tf.control_dependencies([format_check]):
        size_check = _pixel_assertion(height, width, max_pixels, "image")
    with tf.control_dependencies([size_check]):
        frames_check = _gif_frames_assertion(encoded, max_pixels)
    with tf.control_dependencies([format_check, size_check, frames_check]):
        return tf.identity(encoded)


def _gif_frames_assertion(encoded, max_pixels):
    """An Assert op on a GIF's frames (see `gif_frame_pixels`); passes
    anything that is not a GIF without reading it."""
    is_gif = _formats(encoded, _header(encoded))[2]
    largest, total = tf.cond(
        is_gif, lambda: gif_frame_pixels(encoded),
        lambda: (tf.constant(0, tf.int64), tf.constant(0, tf.int64)))
    max_total = GIF_TOTAL_PIXELS_PER_ALLOWED_PIXEL * max_pixels
    message = tf.strings.format(
        "GIF has a frame of {} pixels and {} pixels in all its frames; this model "
        "accepts at most {} per frame and " + str(max_total) + " in all "
        "(export.serving_max_pixels; every frame of a GIF is decoded)",
        (largest, total, max_pixels))
    return tf.debugging.Assert((largest <= max_pixels) & (total <= max_total), [message],
                               name="check_gif_frames")


def check_pixels(images, max_pixels):
    """Refuse a batch of images (N, H, W, C) whose H * W exceeds `max_pixels`.

    Returns `images`, tied to the check.
    """
    shape = tf.shape(images, out_type=tf.int64)
    check = _pixel_assertion(shape[1], shape[2], max_pixels, "each image")
    with tf.control_dependencies([check]):
        return tf.identity(images)


def request_spec(dtype, name):
    """The TensorSpec of a serving input: its dtype, and an open shape.

    The runtime checks the dtype of what it is fed (a clear
    InvalidArgumentError) but not the shape; worse, TensorFlow may fold a
    declared shape into the graph as a constant (measured: a [1] spec fed
    two strings made `tf.shape` read [1]), so a shape check written against
    it can silently vanish. With an open shape, `check_shape` sees what was
    really sent and then fixes the static shape for the code after it.
    """
    return tf.TensorSpec(None, dtype, name=name)


def check_shape(tensor, expected, name):
    """Refuse `tensor` unless its shape is `expected`, a tuple whose ints
    are required sizes and whose strings name free ones, e.g.
    `("batch", "height", "width", 3)`.

    A wrong rank would otherwise reach the model and fail somewhere inside
    it, or be misread (an (H, W, 3) image taken as a batch of H). Returns
    `tensor` with that static shape, tied to the check; pair it with an
    input declared by `request_spec`.
    """
    shape = tf.shape(tensor)
    rank = tf.size(shape)
    # Padded with -1 so that the sizes can be read even at the wrong rank.
    padded = tf.concat([shape, tf.fill([len(expected)], -1)], axis=0)
    matches = tf.equal(rank, len(expected))
    for index, size in enumerate(expected):
        if isinstance(size, int):
            matches &= tf.equal(padded[index], size)
    description = "(" + ", ".join(str(size) for size in expected) + ")"
    message = tf.strings.format(
        name + ": expected shape " + description + ", received shape {}", shape)
    check = tf.debugging.Assert(matches, [message], name="check_shape")
    static_shape = [size if isinstance(size, int) else None for size in expected]
    with tf.control_dependencies([check]):
        checked = tf.identity(tensor)
    # Static only: the check above holds it at run time (measured: with
    # `tf.ensure_shape` here, its vaguer error came first).
    checked.set_shape(static_shape)
    return checked


def check_batch(tensor, max_batch):
    """Refuse a request whose first dimension exceeds `max_batch`.

    An empty batch passes: each endpoint documents what it answers to one.
    Returns `tensor`, tied to the check.
    """
    size = tf.shape(tensor, out_type=tf.int64)[0]
    message = tf.strings.format(
        "batch of {} items; this model accepts at most {} per request "
        "(export.serving_max_batch)", (size, max_batch))
    check = tf.debugging.Assert(size <= max_batch, [message], name="check_batch")
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def check_text(strings, max_bytes):
    """Refuse a batch of strings (N,) in which any is longer than `max_bytes`
    UTF-8 bytes; the message names the first such text and its length.

    Returns `strings`, tied to the check.
    """
    lengths = tf.strings.length(strings, unit="BYTE")
    too_long = lengths > max_bytes
    # A trailing 0 keeps argmax and gather defined for an empty batch; the
    # message is only shown when some text is too long.
    padded_lengths = tf.concat([lengths, [0]], axis=0)
    first = tf.argmax(tf.cast(padded_lengths > max_bytes, tf.int32), output_type=tf.int32)
    message = tf.strings.format(
        "text {} is {} bytes long; this model accepts at most {} bytes per text "
        "(export.serving_max_text_bytes)", (first, padded_lengths[first], max_bytes))
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(too_long)), [message],
                                name="check_text")
    with tf.control_dependencies([check]):
        return tf.identity(strings)


def call_on_nonempty_batch(model, images):
    """`model(images)` that also answers a batch of 0 images (with 0 results).

    Keras layers fail on an empty batch (measured: BatchNormalization in a
    SavedModel, "Incompatible shapes"), so one blank image is added when the
    batch is empty and its result dropped. `images` must have a static size
    (the model's input size). A `tf.cond` around the model would do the
    same but doubled export and load times.
    """
    count = tf.shape(images)[0]
    blank = tf.zeros([1] + images.shape[1:].as_list(), images.dtype)
    at_least_one = tf.concat([images, blank], axis=0)[:tf.maximum(count, 1)]
    return model(at_least_one, training=False)[:count]
