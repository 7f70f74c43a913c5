"""Train ESRGAN x4 (PSNR stage, then GAN stage), fine-tune with QAT, export, report.

    python -m tasks.super_resolution.train                      # built-in photographs
    python -m tasks.super_resolution.train --vgg-weights vgg19_notop.h5
    python -m tasks.super_resolution.train --data div2k --preset esrgan
    python -m tasks.super_resolution.train --data path/to/hr_images
"""

import tasks.super_resolution as task
from common import pipeline


def main(argv=None):
    return pipeline.main_train(task, argv)


if __name__ == "__main__":
    main()
