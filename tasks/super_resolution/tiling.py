"""Upscale an image of any size with a model that takes fixed-size tiles.

The LR image is cut into `tile` x `tile` pieces that overlap by
`2 * overlap` pixels; each piece is upscaled and only its centre (all but
`overlap` LR pixels on sides that have a neighbour) is kept, so the seams
fall where both neighbours saw enough context. An image smaller than one
tile is padded by mirroring and the padding cut off the result.

`upscale_tiled_graph` does the same in TensorFlow ops inside the served
SavedModel, so one large request costs time rather than memory.
"""

import numpy as np
import tensorflow as tf

from common.errors import UserError

# Fewer pixels than this on a side gives the model almost nothing to work with.
MIN_SIDE = 4


def tile_starts(length, tile, overlap=0):
    """Tile start offsets along one axis covering [0, length).

    Neighbours overlap by at least `2 * overlap` pixels; the last tile is
    flush with the end, so it may overlap its neighbour more. The one tiling
    rule of the task: upscaling here and the evaluation tiles in `data.py`.
    """
    if length < tile:
        raise ValueError(f"length {length} is shorter than one tile ({tile}); pad first")
    if not 0 <= 2 * overlap < tile:
        raise ValueError(f"tile overlap {overlap}: expected 0 <= 2 * overlap < tile ({tile})")
    step = tile - 2 * overlap
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _kept_range(start, tile, length, overlap):
    """The part of a tile kept in the result: inner unless at the border."""
    low = start + (overlap if start > 0 else 0)
    high = start + tile - (overlap if start + tile < length else 0)
    return low, high


def upscale_tiled(raw_fn, image, tile, overlap, scale=4, batch_size=8):
    """Upscale float (H, W, 3) `image` with `raw_fn` on (N, tile, tile, 3) batches.

    Returns float32 (scale*H, scale*W, 3), not clipped.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise UserError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise UserError(f"image of {width}x{height} pixels is too small to upscale "
                        f"(need at least {MIN_SIDE}x{MIN_SIDE})")
    if not 0 <= 2 * overlap < tile:
        raise UserError(f"tile overlap {overlap}: expected 0 <= 2 * overlap < tile ({tile})")
    padded_height, padded_width = max(height, tile), max(width, tile)
    if (padded_height, padded_width) != (height, width):
        image = np.pad(image, ((0, padded_height - height), (0, padded_width - width), (0, 0)),
                       mode="symmetric")
    rows = tile_starts(padded_height, tile, overlap)
    cols = tile_starts(padded_width, tile, overlap)
    positions = [(top, left) for top in rows for left in cols]
    result = np.zeros((padded_height * scale, padded_width * scale, 3), np.float32)
    for first in range(0, len(positions), batch_size):
        chunk = positions[first:first + batch_size]
        tiles = np.stack([image[top:top + tile, left:left + tile] for top, left in chunk])
        outputs = np.asarray(raw_fn(tiles), np.float32)
        for (top, left), output in zip(chunk, outputs):
            row_low, row_high = _kept_range(top, tile, padded_height, overlap)
            col_low, col_high = _kept_range(left, tile, padded_width, overlap)
            result[row_low * scale:row_high * scale, col_low * scale:col_high * scale] = \
                output[(row_low - top) * scale:(row_high - top) * scale,
                       (col_low - left) * scale:(col_high - left) * scale]
    return result[:height * scale, :width * scale]


# --- The same tiling inside a TensorFlow graph (the SavedModel) ---------------

def tile_starts_graph(length, tile, overlap):
    """`tile_starts` in TF ops: int32 tile starts covering [0, length).

    An axis shorter than `tile` is one tile of the whole axis, start 0.
    """
    step = tile - 2 * overlap
    last = tf.maximum(length - tile, 0)
    starts = tf.range(0, last + 1, step)
    needs_end_tile = starts[-1] < last
    return tf.cond(needs_end_tile, lambda: tf.concat([starts, [last]], axis=0),
                   lambda: starts)


def _kept_starts_graph(starts, length, overlap):
    """Where the kept part of each tile starts, plus `length` at the end.

    A tile keeps from its start + overlap (0 for the first) to where the
    next tile's kept part starts, so every position has exactly one owner;
    like `upscale_tiled`, where a clamped last tile overlaps its neighbour
    more, the later tile wins.
    """
    inner = starts[1:] + overlap
    return tf.concat([[0], inner, [length]], axis=0)


def _owner_index(starts, kept, length, scale, tile_length):
    """For each output position along an axis: its index in the tile
    outputs laid side by side (tile t's output occupies
    [t * scale * tile_length, (t + 1) * scale * tile_length))."""
    positions = tf.range(length * scale)
    # kept[1:-1] * scale are where ownership passes to the next tile.
    owner = tf.searchsorted(kept[1:-1] * scale, positions, side="right")
    return owner * scale * tile_length + positions - tf.gather(starts, owner) * scale


def upscale_tiled_graph(raw_fn, image, tile, overlap, scale=4, tiles_per_call=8,
                        finish=None, output_dtype=tf.float32):
    """`upscale_tiled` for the SavedModel: float (H, W, 3) -> (scale*H, scale*W, 3).

    The image is processed one row of tiles at a time (a `tf.while_loop`)
    and each row's tiles `tiles_per_call` at a time, so memory grows with
    one row of tiles, not with the whole image. `finish` (e.g. the
    conversion to uint8, giving `output_dtype`) is applied to each tile's
    output before the rows are assembled, so the full-size float image
    never exists. An axis shorter than `tile` is taken whole (no mirrored
    padding), so an image within one tile is exactly the whole-image pass;
    otherwise the tiles and kept parts are `upscale_tiled`'s.
    """
    finish = finish or (lambda outputs: outputs)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    tile_height, tile_width = tf.minimum(tile, height), tf.minimum(tile, width)
    row_starts = tile_starts_graph(height, tile, overlap)
    col_starts = tile_starts_graph(width, tile, overlap)
    row_kept = _kept_starts_graph(row_starts, height, overlap)
    col_kept = _kept_starts_graph(col_starts, width, overlap)
    num_cols = tf.shape(col_starts)[0]
    column_index = _owner_index(col_starts, col_kept, width, scale, tile_width)
    # (num_cols, tile_width): the source columns of every tile of a row.
    tile_columns = col_starts[:, None] + tf.range(tile_width)[None, :]

    def upscale_row(row, rows):
        top = row_starts[row]
        strip = image[top:top + tile_height]
        tiles = tf.transpose(tf.gather(strip, tile_columns, axis=1), [1, 0, 2, 3])

        def upscale_chunk(first, outputs):
            chunk = tiles[first:first + tiles_per_call]
            return first + tiles_per_call, outputs.write(
                first // tiles_per_call, finish(raw_fn(chunk)))

        _, outputs = tf.while_loop(
            lambda first, _: first < num_cols, upscale_chunk,
            (0, tf.TensorArray(output_dtype, 0, dynamic_size=True, infer_shape=False)))
        # (num_cols, s*th, s*tw, 3) -> (s*th, num_cols * s*tw, 3) -> columns.
        upscaled = outputs.concat()
        side_by_side = tf.reshape(
            tf.transpose(upscaled, [1, 0, 2, 3]),
            [scale * tile_height, num_cols * scale * tile_width, 3])
        row_pixels = tf.gather(side_by_side, column_index, axis=1)
        low = (row_kept[row] - top) * scale
        high = (row_kept[row + 1] - top) * scale
        return row + 1, rows.write(row, row_pixels[low:high])

    _, rows = tf.while_loop(
        lambda row, _: row < tf.shape(row_starts)[0], upscale_row,
        (0, tf.TensorArray(output_dtype, 0, dynamic_size=True, infer_shape=False)))
    return rows.concat()
