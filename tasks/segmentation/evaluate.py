"""Score a saved segmentation model (.keras, .tflite or SavedModel) on its test split.

    python -m tasks.segmentation.evaluate runs/segmentation-default/model_int8.tflite
"""

import tasks.segmentation as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
