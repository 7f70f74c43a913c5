"""Score a saved TTS model (.keras or .tflite) on its test split: mel L1,
stop accuracy, attention focus, recognizer word error rate.

    python -m tasks.tts.evaluate runs/tts-default/model_int8.tflite --baseline
"""

import tasks.tts as task
from common import cli, pipeline


def main(argv=None):
    return cli.command(lambda args: pipeline.run_evaluate(task, args), argv)


if __name__ == "__main__":
    main()
