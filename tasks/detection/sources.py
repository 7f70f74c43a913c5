"""Reading detection datasets from local folders and from TFDS.

Local folders come in the two layouts users already have:

- Pascal VOC: `Annotations/*.xml` and `JPEGImages/`; class names from
  `labels.txt` (one a line) when present, else the 20 VOC classes.
- COCO: `annotations.json` and the images it names by `file_name`, relative
  to the folder.

Both give a list of `Record`s (image path, xyxy boxes in the image's own
pixels, class ids). Every annotation and image is checked before training:
a malformed file, a box outside its image or with x2 <= x1, an unknown
class, a NaN or infinite coordinate, a path that leaves the folder, an odd
COCO id or an image that does not decode (with the decoder training uses) is
a `DataError` naming the file, or is skipped and counted with `--skip-bad`.
"""

import collections
import dataclasses
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from common.data import read_image_size, resolve_inside
from common.errors import DataError
from tasks.detection.boxes import xywh_to_xyxy

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# Boxes may reach a fraction of a pixel past the border (rounding in tools).
EDGE_TOLERANCE = 1.0


@dataclasses.dataclass
class Record:
    image_path: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) xyxy in the image's pixels
    classes: np.ndarray  # (N,) int64


def _check_boxes(boxes, width, height, source):
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        # Every comparison with NaN is false, so test finiteness first: a NaN
        # box would otherwise pass the checks below and train without a word.
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            raise DataError(
                f"{source}: box {[x1, y1, x2, y2]} has a NaN or infinite coordinate")
        if x2 <= x1 or y2 <= y1:
            raise DataError(
                f"{source}: box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1")
        if x1 < -EDGE_TOLERANCE or y1 < -EDGE_TOLERANCE or \
                x2 > width + EDGE_TOLERANCE or y2 > height + EDGE_TOLERANCE:
            raise DataError(
                f"{source}: box {[x1, y1, x2, y2]} lies outside its "
                f"{width}x{height} image")


# --- Pascal VOC --------------------------------------------------------------

def _voc_class_names(root):
    labels = os.path.join(root, "labels.txt")
    if not os.path.exists(labels):
        return VOC_CLASSES
    with open(labels, encoding="utf-8") as handle:
        names = tuple(line.strip() for line in handle if line.strip())
    if not names:
        raise DataError(f"{labels}: no class names (expected one per line)")
    return names


def _voc_number(element, tag, source):
    child = element.find(tag)
    if child is None or child.text is None:
        raise DataError(f"{source}: missing <{tag}>")
    try:
        return float(child.text)
    except ValueError:
        raise DataError(f"{source}: <{tag}> is {child.text!r}, expected a number") from None


def read_voc_annotation(path, root, class_names):
    """One VOC XML file -> Record; DataError on anything unusable."""
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as error:
        raise DataError(f"{path}: malformed XML ({error})") from None
    annotation = tree.getroot()
    filename = annotation.findtext("filename")
    if not filename:
        filename = os.path.splitext(os.path.basename(path))[0] + ".jpg"
    image_path = resolve_inside(root, os.path.join("JPEGImages", filename.strip()), path)
    width, height = read_image_size(image_path)
    boxes, classes = [], []
    for obj in annotation.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_names:
            raise DataError(
                f"{path}: unknown class {name!r} (known: {', '.join(class_names)})")
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{path}: object {name!r} has no <bndbox>")
        # VOC counts pixels from 1 and includes the last one: pixel edges are
        # (xmin - 1, xmax).
        boxes.append([_voc_number(box, "xmin", path) - 1, _voc_number(box, "ymin", path) - 1,
                      _voc_number(box, "xmax", path), _voc_number(box, "ymax", path)])
        classes.append(class_names.index(name))
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    _check_boxes(boxes, width, height, path)
    return Record(image_path, width, height, boxes, np.array(classes, np.int64))


def load_voc_folder(root, bad_samples, max_skipped_fraction=None):
    """Records and class names of a Pascal VOC folder.

    With `max_skipped_fraction`, skipping more than that share of the
    annotation files stops with a DataError.
    """
    folder = os.path.join(root, "Annotations")
    if not os.path.isdir(folder):
        raise DataError(f"{root}: no Annotations/ folder (expected Pascal VOC layout)")
    class_names = _voc_class_names(root)
    names = [name for name in sorted(os.listdir(folder)) if name.endswith(".xml")]
    records = []
    for name in names:
        try:
            records.append(read_voc_annotation(os.path.join(folder, name), root, class_names))
        except DataError as error:
            bad_samples.handle(error)
    if max_skipped_fraction is not None:
        bad_samples.check_share(len(names), max_skipped_fraction, folder)
    if not records:
        raise DataError(f"{folder}: no usable annotations")
    return records, list(class_names)


# --- COCO -------------------------------------------------------------------

def _coco_field(item, key, source, kind):
    if not isinstance(item, dict) or key not in item:
        raise DataError(f"{source}: {kind} entry without {key!r}: {str(item)[:80]}")
    return item[key]


def _coco_id(item, key, source, kind):
    """An id field that must be an integer, as COCO's ids are: a string "1"
    would silently fail to match an integer 1 elsewhere in the file."""
    value = _coco_field(item, key, source, kind)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(
            f"{source}: {kind} {key} {value!r} is not an integer (COCO ids are integers)")
    return value


def _coco_categories(categories, path, bad_samples):
    """{category id: class index} and class names, ordered by id."""
    names_by_id = {}
    for category in categories:
        try:
            category_id = _coco_id(category, "id", path, "category")
            name = str(_coco_field(category, "name", path, "category"))
            if category_id in names_by_id:
                raise DataError(
                    f"{path}: category id {category_id} is used twice "
                    f"({names_by_id[category_id]!r} and {name!r}); ids must be unique")
        except DataError as error:
            bad_samples.handle(error)
            continue
        names_by_id[category_id] = name
    if not names_by_id:
        raise DataError(f"{path}: no usable categories")
    ids = sorted(names_by_id)
    return ({category_id: index for index, category_id in enumerate(ids)},
            [names_by_id[category_id] for category_id in ids])


def _coco_bbox(annotation, source):
    bbox = _coco_field(annotation, "bbox", source, "annotation")
    if not (isinstance(bbox, list) and len(bbox) == 4 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
        raise DataError(f"{source}: bbox {bbox!r} is not [x, y, width, height]")
    return bbox


def load_coco_folder(root, bad_samples, max_skipped_fraction=None):
    """Records and class names of a COCO folder (`annotations.json` + images).

    With `max_skipped_fraction`, skipping more than that share of the
    images stops with a DataError.
    """
    path = os.path.join(root, "annotations.json")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise DataError(f"{root}: no annotations.json (expected COCO layout)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(key), list) for key in ("images", "annotations", "categories")):
        raise DataError(f"{path}: expected lists 'images', 'annotations' and 'categories'")

    class_index, class_names = _coco_categories(data["categories"], path, bad_samples)

    per_image = {}
    for annotation in data["annotations"]:
        try:
            image_id = _coco_id(annotation, "image_id", path, "annotation")
        except DataError as error:
            bad_samples.handle(error)
            continue
        per_image.setdefault(image_id, []).append(annotation)

    # An id shared by two images leaves their annotations ambiguous.
    id_counts = collections.Counter(
        image["id"] for image in data["images"]
        if isinstance(image, dict) and type(image.get("id")) is int)

    records = []
    for image in data["images"]:
        try:
            file_name = str(_coco_field(image, "file_name", path, "image"))
            source = f"{path} (image {file_name!r})"
            image_id = _coco_id(image, "id", source, "image")
            if id_counts[image_id] > 1:
                raise DataError(
                    f"{source}: image id {image_id} is used by {id_counts[image_id]} "
                    "images; ids must be unique")
            image_path = resolve_inside(root, file_name, source)
            width, height = read_image_size(image_path)
            boxes, classes = [], []
            for annotation in per_image.get(image_id, []):
                if annotation.get("iscrowd", 0):
                    continue  # crowd regions are ignored by COCO's own evaluation
                category = _coco_id(annotation, "category_id", source, "annotation")
                if category not in class_index:
                    raise DataError(f"{source}: unknown category_id {category!r}")
                boxes.append(xywh_to_xyxy(_coco_bbox(annotation, source)))
                classes.append(class_index[category])
            boxes = np.array(boxes, np.float32).reshape(-1, 4)
            _check_boxes(boxes, width, height, source)
            records.append(Record(image_path, width, height, boxes,
                                  np.array(classes, np.int64)))
        except DataError as error:
            bad_samples.handle(error)
    if max_skipped_fraction is not None:
        bad_samples.check_share(len(data["images"]), max_skipped_fraction, path)
    if not records:
        raise DataError(f"{path}: no usable images")
    return records, class_names


def load_folder(root, bad_samples, max_skipped_fraction=None):
    """A VOC or COCO folder, recognized by its layout."""
    if not os.path.isdir(root):
        raise DataError(
            f"--data {root}: not a folder, a TFDS name (voc/2007, coco/2017) or 'synthetic'")
    if os.path.exists(os.path.join(root, "annotations.json")):
        return load_coco_folder(root, bad_samples, max_skipped_fraction)
    if os.path.isdir(os.path.join(root, "Annotations")):
        return load_voc_folder(root, bad_samples, max_skipped_fraction)
    raise DataError(
        f"{root}: neither a COCO folder (annotations.json) nor a Pascal VOC "
        "folder (Annotations/ + JPEGImages/)")


# --- TFDS -------------------------------------------------------------------

# Which TFDS split plays train / val / test. COCO's test split has no labels,
# so its validation split is cut in two.
TFDS_SPLITS = {
    "voc": ("train", "validation", "test"),
    "coco": ("train", "validation[:20%]", "validation[20%:]"),
}


def tfds_split_names(name):
    family = name.split("/")[0]
    if family not in TFDS_SPLITS:
        raise DataError(
            f"--data {name}: detection reads the TFDS sets "
            f"{', '.join(k + '/...' for k in TFDS_SPLITS)}")
    return TFDS_SPLITS[family]
