"""Upscale images x4 with a trained generator; writes the x4 image and a side-by-side picture.

    python -m tasks.super_resolution.predict photo.png other.jpg \\
        --model runs/super_resolution-default/model_int8.tflite --out predictions/
    python -m tasks.super_resolution.predict original.png --from-hr   # also scores it

Each IMAGE is the low-resolution input, unless --from-hr: then it is the
original, its x4 bicubic downscale is the input, and the picture and the
scores compare against it. A `.tflite` takes fixed tiles, so the image is
cut into overlapping tiles (any size works); `.keras` and SavedModel run
the whole image at once unless --tile is given. Greyscale and RGBA images
are converted to RGB (the log says so).
"""

import os
import sys

import numpy as np
from PIL import Image, ImageDraw

import tasks.super_resolution as task
from common import artifacts, cli
from common.errors import UserError
from common.litert import LiteRTModel
from tasks.super_resolution.data import bicubic_upscale, crop_to_scale, downscale, read_rgb
from tasks.super_resolution.metrics import image_scores
from tasks.super_resolution.tiling import MIN_SIDE, upscale_tiled

LABEL_HEIGHT = 18


def upscale_image(raw_fn, image, scale, tile=0, overlap=0):
    """Float (H, W, 3) in [0, 1] -> float (4H, 4W, 3) in [0, 1].

    `tile` > 0 cuts the image into overlapping tiles (needed for a
    fixed-shape `.tflite`); 0 runs the whole image at once.
    """
    if min(image.shape[:2]) < MIN_SIDE:
        raise UserError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small "
                        f"to upscale (need at least {MIN_SIDE}x{MIN_SIDE})")
    if tile:
        result = upscale_tiled(raw_fn, image, tile, overlap, scale)
    else:
        result = np.asarray(raw_fn(image[None].astype(np.float32)))[0]
    return np.clip(result, 0.0, 1.0)


def model_tile_size(raw_fn):
    """The fixed input size of a `.tflite`, or 0 for any-size models."""
    if isinstance(raw_fn, LiteRTModel):
        details = next(iter(raw_fn.input_details.values()))
        return int(details["shape"][1])
    return 0


def to_uint8(image):
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def side_by_side(panels):
    """[(title, uint8 image)] -> one uint8 picture, panels left to right."""
    height = max(image.shape[0] for _, image in panels)
    width = sum(image.shape[1] for _, image in panels) + 4 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    left = 0
    for title, image in panels:
        canvas.paste(Image.fromarray(image), (left, LABEL_HEIGHT))
        draw.text((left + 4, 3), title, fill="black")
        left += image.shape[1] + 4
    return canvas


def predict_file(path, raw_fn, cfg, out_dir, from_hr=False, tile=0):
    """Upscale one file; returns (x4 path, side-by-side path, scores or None)."""
    scale = cfg.model.scale
    image, note = read_rgb(path)
    if note:
        print(f"note: {note}", file=sys.stderr)
    original = None
    if from_hr:
        original = crop_to_scale(image, scale)
        if min(original.shape[:2]) < MIN_SIDE * scale:
            raise UserError(f"{path}: {image.shape[1]}x{image.shape[0]} is too small to "
                            f"downscale x{scale} (need {MIN_SIDE * scale} pixels a side)")
        low = downscale(original.astype(np.float32) / 255.0, scale).numpy()
    else:
        low = image.astype(np.float32) / 255.0
    high = upscale_image(raw_fn, low, scale, tile, cfg.model.tile_overlap)
    bicubic = bicubic_upscale(low, scale).numpy()
    stem = os.path.splitext(os.path.basename(path))[0]
    output_path = os.path.join(out_dir, f"{stem}_x{scale}.png")
    Image.fromarray(to_uint8(high)).save(output_path)
    panels = [("bicubic", to_uint8(bicubic)), ("model", to_uint8(high))]
    scores = None
    if original is not None:
        panels.append(("original", original))
        reference = original.astype(np.float32) / 255.0
        scores = {"model": image_scores(reference, high, scale),
                  "bicubic": image_scores(reference, bicubic, scale)}
    compare_path = os.path.join(out_dir, f"{stem}_compare.png")
    side_by_side(panels).save(compare_path)
    return output_path, compare_path, scores


def run(argv=None):
    parser = cli.predict_parser(task, __doc__.splitlines()[0],
                                default_model="runs/super_resolution-default/model.keras")
    parser.add_argument("--from-hr", action="store_true",
                        help="the images are originals: downscale x4 first, then compare")
    parser.add_argument("--tile", type=int, default=None,
                        help="LR tile size (default: the .tflite's input size; whole "
                             "image for .keras / SavedModel)")
    args = parser.parse_args(argv)
    cfg, _, raw_fn = artifacts.load_for_predict(task, args)
    fixed = model_tile_size(raw_fn)
    tile = args.tile if args.tile is not None else fixed
    if fixed and tile != fixed:
        raise UserError(f"--tile {tile}: {args.model} takes {fixed}x{fixed} tiles only")
    if tile and not 0 <= 2 * cfg.model.tile_overlap < tile:
        raise UserError(f"--tile {tile}: must exceed twice the overlap "
                        f"({cfg.model.tile_overlap})")
    written = []
    for path in args.inputs:
        output_path, compare_path, scores = predict_file(
            path, raw_fn, cfg, args.out, args.from_hr, tile)
        line = f"{path}: {output_path}, {compare_path}"
        if scores:
            line += (f" (PSNR-Y model {scores['model']['psnr_y']:.2f} dB, "
                     f"bicubic {scores['bicubic']['psnr_y']:.2f} dB)")
        print(line)
        written.append(output_path)
    return written


def main(argv=None):
    return cli.command(run, argv)


if __name__ == "__main__":
    main()
