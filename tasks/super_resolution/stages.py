"""ESRGAN's two training stages, run by the shared pipeline as `fit_float`.

1. PSNR-oriented: the generator alone, L1 loss (`train.*` settings), on
   small random crops. Its result is kept as `psnr_generator.keras`.
2. Adversarial: from the stage-1 weights, the generator against a VGG-style
   discriminator with the relativistic average GAN loss plus L1 (and the
   VGG19 perceptual loss when `--vgg-weights` is given), `gan.*` settings.
   Kept as `gan_generator.keras`.

Which generator goes on to QAT and export is `gan.export`; the default is
"psnr": the QAT fine-tune that follows uses the L1 loss of `compile_args`,
which would pull a GAN generator back toward the PSNR solution anyway, and
the issue's quality bars (beat bicubic, INT8 within 0.3 dB of float) are
PSNR measures. Both generators are scored on the test split and written to
`stages.json`; the report notes carry the numbers.
"""

import os

import keras
import numpy as np

from common import files, training
from common.data import Splits
from common.errors import UserError
from common.gan import AdversarialTrainer, ContentLoss
from common.training import FloatResult
from tasks.super_resolution.losses import PerceptualLoss, l1_loss
from tasks.super_resolution.metrics import bicubic_predict_fn, score
from tasks.super_resolution.model import (build_discriminator, build_generator,
                                          compile_args, custom_objects)

EXPORT_CHOICES = ("psnr", "gan")


def validate_gan_config(cfg):
    gan = cfg.gan
    if gan.export not in EXPORT_CHOICES:
        raise UserError(f"gan.export: expected psnr or gan, got {gan.export!r}")
    if gan.export == "gan" and gan.epochs < 1:
        raise UserError("gan.export=gan needs gan.epochs >= 1")
    if gan.epochs > 0 and cfg.data.hr_patch_size % 32:
        raise UserError(f"data.hr_patch_size: the discriminator needs a multiple of 32, "
                        f"got {cfg.data.hr_patch_size}")
    if gan.vgg_weights and not os.path.isfile(gan.vgg_weights):
        # Checked before stage 1 so a typo does not cost a whole PSNR stage.
        raise UserError(f"--vgg-weights {gan.vgg_weights!r}: file not found (expected "
                        "the Keras VGG19 weights without the top, e.g. "
                        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)")


def keras_predict_fn(model):
    return lambda inputs: np.asarray(model(inputs, training=False))


def copy_generator(model, cfg, name):
    generator = build_generator(cfg.model, name=name)
    generator.set_weights(model.get_weights())
    return generator


def load_finished(path, context):
    """The generator a finished sub-stage saved, when resuming; else None."""
    if not (context.resume and os.path.exists(path)):
        return None
    print(f"[super_resolution] resume: {os.path.basename(path)} already trained, loading it")
    return keras.saving.load_model(path, custom_objects=custom_objects(), safe_mode=True)


def psnr_stage(model, splits, cfg, info, context):
    """Stage 1: L1 on small crops; loads the best validation checkpoint."""
    path = os.path.join(context.run_dir, "psnr_generator.keras")
    finished = load_finished(path, context)
    if finished is not None:
        model.set_weights(finished.get_weights())
        return model
    patches = Splits(train=splits.train_patches, val=splits.val, test=splits.test,
                     info=info)
    print("[super_resolution] stage 1/2: PSNR-oriented training (L1)")
    context.fit(model, patches, cfg, compile_args(cfg, info), "psnr")
    training.restore_best(model, context.stage_dir("psnr"))
    files.save_keras_atomic(model, path)
    training.remove_backup(context.stage_dir("psnr"))
    return model


def gan_content_losses(cfg):
    """L1 (+ perceptual with VGG weights) and the log line saying which."""
    gan = cfg.gan
    losses = []
    if gan.vgg_weights:
        losses.append(ContentLoss("perceptual", gan.perceptual_weight,
                                  PerceptualLoss(gan.vgg_weights)))
        l1_weight = 1e-2 if gan.l1_weight is None else gan.l1_weight
        message = f"perceptual loss on VGG19 features from {gan.vgg_weights}"
    else:
        l1_weight = 1.0 if gan.l1_weight is None else gan.l1_weight
        message = ("WITHOUT perceptual loss (no --vgg-weights given): adversarial + L1 "
                   f"(weight {l1_weight}) only")
    losses.append(ContentLoss("l1", l1_weight, l1_loss))
    return losses, message


def gan_stage(psnr_generator, splits, cfg, context):
    """Stage 2: adversarial fine-tune of a copy of the PSNR-stage generator."""
    gan = cfg.gan
    stage_dir = context.stage_dir("gan")
    os.makedirs(stage_dir, exist_ok=True)
    content_losses, message = gan_content_losses(cfg)
    path = os.path.join(context.run_dir, "gan_generator.keras")
    finished = load_finished(path, context)
    if finished is not None:
        return finished, message
    generator = copy_generator(psnr_generator, cfg, "rrdb_generator_gan")
    normalization = "none" if gan.loss == "wgan_gp" else "batch"
    discriminator = build_discriminator(cfg.model, cfg.data.hr_patch_size, normalization)
    print(f"[super_resolution] stage 2/2: adversarial training ({gan.loss}), {message}")
    trainer = AdversarialTrainer(
        generator, discriminator, loss=gan.loss, adversarial_weight=gan.adversarial_weight,
        content_losses=content_losses, gradient_penalty_weight=gan.gradient_penalty_weight,
        seed=cfg.run.seed)
    # ESRGAN: Adam with beta_1 0.9, beta_2 0.99 for both networks.
    trainer.compile(
        generator_optimizer=keras.optimizers.Adam(gan.generator_learning_rate,
                                                  beta_1=0.9, beta_2=0.99),
        discriminator_optimizer=keras.optimizers.Adam(gan.discriminator_learning_rate,
                                                      beta_1=0.9, beta_2=0.99))
    train = (splits.train_patches.unbatch()
             .batch(gan.batch_size, drop_remainder=True).repeat())
    steps = gan.steps_per_epoch or max(1, cfg.data.num_train // gan.batch_size)
    trainer.fit(
        train, epochs=gan.epochs, steps_per_epoch=steps, validation_data=splits.val,
        callbacks=[
            training.StopOnNonFinite("gan"),
            training.AtomicBackupAndRestore(os.path.join(stage_dir, "backup")),
            keras.callbacks.CSVLogger(os.path.join(stage_dir, "history.csv"), append=True),
        ],
        verbose=2)
    files.save_keras_atomic(generator, path)
    training.remove_backup(stage_dir)
    return generator, message


def fit_float(model, splits, cfg, info, context):
    """Both stages; returns the generator chosen by `gan.export`."""
    validate_gan_config(cfg)
    model = psnr_stage(model, splits, cfg, info, context)
    scores = {"bicubic": score(bicubic_predict_fn(splits, info), splits.test, info),
              "psnr_stage": score(keras_predict_fn(model), splits.test, info)}
    chosen = model
    gan_message = "GAN stage skipped (gan.epochs=0)"
    if cfg.gan.epochs > 0:
        generator, gan_message = gan_stage(model, splits, cfg, context)
        scores["gan_stage"] = score(keras_predict_fn(generator), splits.test, info)
        if cfg.gan.export == "gan":
            chosen = generator
    stages = {"exported": cfg.gan.export, "gan_stage": gan_message,
              "test_metrics": scores,
              "artifacts": {"psnr_stage": "psnr_generator.keras",
                            "gan_stage": "gan_generator.keras" if cfg.gan.epochs > 0 else None}}
    files.write_json_atomic(os.path.join(context.run_dir, "stages.json"), stages)
    metrics = {f"{name}_float": values for name, values in scores.items() if name != "bicubic"}
    notes = []
    for name, values in scores.items():
        notes.append(f"{name} (float, test tiles): PSNR-Y {values['psnr_y']:.2f} dB, "
                     f"SSIM-Y {values['ssim_y']:.4f}, PSNR-RGB {values['psnr_rgb']:.2f} dB")
    notes.append(f"{gan_message}. Exported (QAT, INT8, SavedModel): the "
                 f"{cfg.gan.export.upper()}-stage generator; both are in stages.json")
    return FloatResult(chosen, notes=notes, metrics=metrics)
