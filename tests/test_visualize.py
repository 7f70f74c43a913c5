import numpy as np

from common import visualize


def test_void_labels_are_drawn_grey_and_classes_in_their_colour():
    colours = visualize.palette(3)
    image = np.zeros((2, 2, 3), np.uint8)
    mask = np.array([[0, 2], [255, 1]])
    drawn = visualize.overlay_mask(image, mask, colours, alpha=1.0, background_class=0)
    assert drawn[0, 0].tolist() == [0, 0, 0]  # background keeps the image
    assert drawn[0, 1].tolist() == list(colours[2])
    assert drawn[1, 0].tolist() == list(visualize.IGNORED_COLOUR)
    assert drawn[1, 1].tolist() == list(colours[1])
