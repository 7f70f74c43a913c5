"""Export a trained sentiment model again: LiteRT float and INT8, and a new SavedModel version.

    python -m tasks.sentiment.export runs/sentiment-default/model.keras
"""

import tasks.sentiment as task
from common import cli, pipeline


def main(argv=None):
    return cli.main_guard(lambda: pipeline.run_export(task, argv))


if __name__ == "__main__":
    main()
