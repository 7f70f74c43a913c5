"""Train a BERT sentiment classifier, export LiteRT (float, INT8) and SavedModel, report.

    python -m tasks.sentiment.train --preset default          # built-in reviews
    python -m tasks.sentiment.train --preset smoke            # seconds
    python -m tasks.sentiment.train --preset mini --data glue/sst2
    python -m tasks.sentiment.train --data reviews.csv        # text,label columns
    python -m tasks.sentiment.train --preset mini --pretrain-epochs 3
    python -m tasks.sentiment.train --init path/to/bert_tiny_en_uncased \\
        --set train.learning_rate=1e-4                         # a downloaded checkpoint
    python -m tasks.sentiment.train --preset tiny --out runs/student \\
        --teacher runs/teacher/model.keras --alpha 0.5 --temperature 2
"""

import tasks.sentiment as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
