"""Export a trained TTS model again: LiteRT float and INT8, and a new SavedModel version.

    python -m tasks.tts.export runs/tts-default/model.keras
"""

import tasks.tts as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
