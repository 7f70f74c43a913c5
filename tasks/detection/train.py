"""Train YOLOv8, fine-tune it with QAT, export LiteRT and SavedModel, report.

    python -m tasks.detection.train --preset default          # built-in shapes
    python -m tasks.detection.train --data voc/2007 --preset yolov8_s
    python -m tasks.detection.train --data path/to/folder     # VOC or COCO layout
"""

import tasks.detection as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
