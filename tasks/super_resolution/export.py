"""Export a trained generator again: LiteRT float and INT8 tiles, a new SavedModel.

    python -m tasks.super_resolution.export runs/super_resolution-default/model.keras
"""

import tasks.super_resolution as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
