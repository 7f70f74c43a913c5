"""Score a saved generator (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.super_resolution.evaluate runs/super_resolution-default/model_int8.tflite --baseline
"""

import tasks.super_resolution as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
