"""Train a Transformer translator, QAT it, export LiteRT (encode + decode_step,
float and INT8) and a SavedModel that translates strings, and write a report.

    python -m tasks.translation.train --preset smoke            # seconds
    python -m tasks.translation.train --preset default          # built-in English -> Spanish
    python -m tasks.translation.train --data pairs.tsv          # source<TAB>target lines
    python -m tasks.translation.train --data train.en,train.es  # two aligned files
    python -m tasks.translation.train --preset base --data ted_hrlr_translate/pt_to_en
"""

import tasks.translation as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
