"""Export a trained sentiment model again: LiteRT float and INT8, and a new SavedModel version.

    python -m tasks.sentiment.export runs/sentiment-default/model.keras
"""

import tasks.sentiment as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_export(task, args), argv)


if __name__ == "__main__":
    main()
