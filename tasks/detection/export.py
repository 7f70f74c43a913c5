"""Export a trained detector again: LiteRT float and INT8, and a new SavedModel version.

    python -m tasks.detection.export runs/detection-default/model.keras
"""

import tasks.detection as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
