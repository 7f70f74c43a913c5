"""Train Tacotron 2, export LiteRT (float, INT8) and SavedModel, report.

    python -m tasks.tts.train --preset default          # built-in espeak-ng corpus
    python -m tasks.tts.train --preset smoke            # seconds
    python -m tasks.tts.train --data path/to/LJSpeech-1.1 --preset default
    python -m tasks.tts.train --data ljspeech --preset paper
"""

import tasks.tts as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
