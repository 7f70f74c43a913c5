"""Reading detection datasets from local folders and from TFDS.

Local folders come in the two layouts users already have:

- Pascal VOC: `Annotations/*.xml` and `JPEGImages/`; class names from
  `labels.txt` (one a line) when present, else the 20 VOC classes.
- COCO: `annotations.json` and the images it names by `file_name`, relative
  to the folder.

Both give a list of `Record`s (image path, xyxy boxes in the image's own
pixels, class ids). Every annotation and image is checked before training:
a malformed file, a box outside its image or with x2 <= x1, an unknown
class, a path that leaves the folder or an image that does not decode is a
`DataError` naming the file, or is skipped and counted with `--skip-bad`.
"""

import dataclasses
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from common.data import resolve_inside
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
        if x2 <= x1 or y2 <= y1:
            raise DataError(
                f"{source}: box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1")
        if x1 < -EDGE_TOLERANCE or y1 < -EDGE_TOLERANCE or \
                x2 > width + EDGE_TOLERANCE or y2 > height + EDGE_TOLERANCE:
            raise DataError(
                f"{source}: box {[x1, y1, x2, y2]} lies outside its "
                f"{width}x{height} image")


def image_size_of(path):
    """(width, height) of an image that fully decodes; DataError otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: image does not decode (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: image does not decode ({error})") from None


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
    width, height = image_size_of(image_path)
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


def load_voc_folder(root, bad_samples):
    """Records and class names of a Pascal VOC folder."""
    folder = os.path.join(root, "Annotations")
    if not os.path.isdir(folder):
        raise DataError(f"{root}: no Annotations/ folder (expected Pascal VOC layout)")
    class_names = _voc_class_names(root)
    records = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".xml"):
            continue
        try:
            records.append(read_voc_annotation(os.path.join(folder, name), root, class_names))
        except DataError as error:
            bad_samples.handle(error)
    if not records:
        raise DataError(f"{folder}: no usable annotations")
    return records, list(class_names)


# --- COCO -------------------------------------------------------------------

def _coco_field(item, key, source, kind):
    if not isinstance(item, dict) or key not in item:
        raise DataError(f"{source}: {kind} entry without {key!r}: {str(item)[:80]}")
    return item[key]


def load_coco_folder(root, bad_samples):
    """Records and class names of a COCO folder (`annotations.json` + images)."""
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

    categories = sorted(data["categories"], key=lambda c: _coco_field(c, "id", path, "category"))
    class_index = {c["id"]: index for index, c in enumerate(categories)}
    class_names = [str(_coco_field(c, "name", path, "category")) for c in categories]

    per_image = {}
    for annotation in data["annotations"]:
        image_id = _coco_field(annotation, "image_id", path, "annotation")
        per_image.setdefault(image_id, []).append(annotation)

    records = []
    for image in data["images"]:
        try:
            image_id = _coco_field(image, "id", path, "image")
            file_name = str(_coco_field(image, "file_name", path, "image"))
            source = f"{path} (image {file_name!r})"
            image_path = resolve_inside(root, file_name, source)
            width, height = image_size_of(image_path)
            boxes, classes = [], []
            for annotation in per_image.get(image_id, []):
                if annotation.get("iscrowd", 0):
                    continue  # crowd regions are ignored by COCO's own evaluation
                category = _coco_field(annotation, "category_id", source, "annotation")
                if category not in class_index:
                    raise DataError(f"{source}: unknown category_id {category!r}")
                bbox = _coco_field(annotation, "bbox", source, "annotation")
                if not (isinstance(bbox, list) and len(bbox) == 4 and
                        all(isinstance(v, (int, float)) for v in bbox)):
                    raise DataError(f"{source}: bbox {bbox!r} is not [x, y, width, height]")
                boxes.append(xywh_to_xyxy(bbox))
                classes.append(class_index[category])
            boxes = np.array(boxes, np.float32).reshape(-1, 4)
            _check_boxes(boxes, width, height, source)
            records.append(Record(image_path, width, height, boxes,
                                  np.array(classes, np.int64)))
        except DataError as error:
            bad_samples.handle(error)
    if not records:
        raise DataError(f"{path}: no usable images")
    return records, class_names


def load_folder(root, bad_samples):
    """A VOC or COCO folder, recognized by its layout."""
    if not os.path.isdir(root):
        raise DataError(
            f"--data {root}: not a folder, a TFDS name (voc/2007, coco/2017) or 'synthetic'")
    if os.path.exists(os.path.join(root, "annotations.json")):
        return load_coco_folder(root, bad_samples)
    if os.path.isdir(os.path.join(root, "Annotations")):
        return load_voc_folder(root, bad_samples)
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
