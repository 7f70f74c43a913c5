"""Upscale an image of any size with a model that takes fixed-size tiles.

The LR image is cut into `tile` x `tile` pieces that overlap by
`2 * overlap` pixels; each piece is upscaled and only its centre (all but
`overlap` LR pixels on sides that have a neighbour) is kept, so the seams
fall where both neighbours saw enough context. An image smaller than one
tile is padded by mirroring and the padding cut off the result.
"""

import numpy as np

from common.errors import UserError

# Fewer pixels than this on a side gives the model almost nothing to work with.
MIN_SIDE = 4


def tile_starts(length, tile, overlap):
    """Tile start offsets along one axis covering [0, length)."""
    step = tile - 2 * overlap
    starts = list(range(0, max(length - tile, 0) + 1, step))
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
