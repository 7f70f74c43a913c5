"""Pictures for reports: colour palettes, mask overlays, image grids."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def palette(num_classes):
    """Distinct RGB colours (uint8), class 0 dark grey."""
    colours = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")(np.arange(num_classes))
    colours = (colours[:, :3] * 255).astype(np.uint8)
    colours[0] = (40, 40, 40)
    return colours


IGNORED_COLOUR = (128, 128, 128)


def overlay_mask(image, mask, colours, alpha=0.6, background_class=0):
    """Blend class colours over a uint8 or [0, 1] float image; pixels of
    `background_class` keep the image as it is, and values outside the class
    range (a void label such as 255) are drawn grey."""
    image = np.asarray(image, np.float32)
    if image.max() <= 1.0:
        image = image * 255.0
    mask = np.asarray(mask, np.int64)
    known = (mask >= 0) & (mask < len(colours))
    coloured = np.where(known[..., None], colours[np.where(known, mask, 0)],
                        np.asarray(IGNORED_COLOUR)).astype(np.float32)
    weight = np.where(mask == background_class, 0.0, alpha)[..., None] \
        if background_class is not None else alpha
    return np.clip((1 - weight) * image + weight * coloured, 0, 255).astype(np.uint8)


def save_grid(rows, column_titles, path, legend=None):
    """Save a grid of images (a list of rows, each a list of HxWx3 arrays)."""
    columns = len(column_titles)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.2 * len(rows)),
                                squeeze=False)
    for row_index, row in enumerate(rows):
        for column_index, picture in enumerate(row):
            axis = axes[row_index][column_index]
            axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row_index == 0:
                axis.set_title(column_titles[column_index], fontsize=9)
    if legend:
        handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(colour) / 255.0)
                   for colour in legend.values()]
        figure.legend(handles, list(legend), loc="lower center", ncol=len(legend), fontsize=8)
    figure.tight_layout(rect=(0, 0.05 if legend else 0, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
