"""Score a saved detector (.keras, .tflite or SavedModel) on its test split: COCO mAP.

    python -m tasks.detection.evaluate runs/detection-default/model_int8.tflite --baseline
"""

import tasks.detection as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
