"""Score a saved generator (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.super_resolution.evaluate runs/super_resolution-default/model_int8.tflite --baseline
"""

import tasks.super_resolution as task
from common import cli, pipeline


def main(argv=None):
    return cli.main_guard(lambda: pipeline.run_evaluate(task, argv))


if __name__ == "__main__":
    main()
