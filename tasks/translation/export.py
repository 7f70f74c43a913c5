"""Export a trained translation model again: LiteRT float and INT8 (encode +
decode_step signatures), and a new SavedModel version.

    python -m tasks.translation.export runs/translation-default/model.keras
"""

import tasks.translation as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
