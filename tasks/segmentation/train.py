"""Train a U-Net, fine-tune it with QAT, export LiteRT and SavedModel, report.

    python -m tasks.segmentation.train --preset default
    python -m tasks.segmentation.train --data oxford_iiit_pet --preset unet
    python -m tasks.segmentation.train --data path/to/folder   # images/ + masks/
"""

import tasks.segmentation as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
