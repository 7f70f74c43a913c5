"""Score a saved translation model (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.translation.evaluate runs/translation-default/model_int8.tflite --baseline
    python -m tasks.translation.evaluate runs/translation-default/model.keras --set model.decoding=greedy

Text is tokenized with the model's own vocabularies (its info.json).
"""

import tasks.translation as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
