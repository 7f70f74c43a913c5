"""Score a saved detector (.keras, .tflite or SavedModel) on its test split: COCO mAP.

    python -m tasks.detection.evaluate runs/detection-default/model_int8.tflite --baseline
"""

import tasks.detection as task
from common import cli, pipeline


def main(argv=None):
    return cli.main_guard(lambda: pipeline.run_evaluate(task, argv))


if __name__ == "__main__":
    main()
