"""Score a saved sentiment model (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.sentiment.evaluate runs/sentiment-default/model_int8.tflite
    python -m tasks.sentiment.evaluate runs/sentiment-default/model.keras --data other.csv

The text is tokenised with the model's own vocabulary (found beside the
model, or in a SavedModel's assets.extra/info.json), and other data's labels
are read against the model's class names, so other data is scored exactly as
the model was trained.
"""

import tasks.sentiment as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
