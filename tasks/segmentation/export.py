"""Export a trained U-Net again: LiteRT float and INT8, and a new SavedModel version.

    python -m tasks.segmentation.export runs/segmentation-default/model.keras
"""

import tasks.segmentation as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
