import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import config, training
from common.data import Splits
from common.errors import UserError


def test_cosine_schedule_warms_up_then_decays():
    train = config.TrainConfig(learning_rate=1e-2, schedule="cosine", warmup_epochs=1, epochs=4)
    schedule = training.make_schedule(train, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 10, 25, 39)]
    assert values[0] < values[1] and values[1] == pytest.approx(1e-2, rel=1e-3)
    assert values[1] > values[2] > values[3]


def test_step_schedule_drops_tenfold():
    schedule = training.make_schedule(config.TrainConfig(learning_rate=1.0, schedule="step",
                                                         epochs=4), steps_per_epoch=10)
    assert [float(schedule(s)) for s in (0, 25, 35)] == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize("name, expected", [("sgd", keras.optimizers.SGD),
                                            ("momentum", keras.optimizers.SGD),
                                            ("adam", keras.optimizers.Adam),
                                            ("adamw", keras.optimizers.AdamW)])
def test_optimizers_by_name(name, expected):
    optimizer = training.make_optimizer(config.TrainConfig(optimizer=name, clipnorm=1.0), 5)
    assert isinstance(optimizer, expected) and optimizer.global_clipnorm == 1.0
    if name == "momentum":
        assert optimizer.momentum == 0.9


def test_unknown_optimizer_schedule_and_strategy_are_user_errors():
    with pytest.raises(UserError, match="unknown optimizer 'rmsprop'"):
        training.make_optimizer(config.TrainConfig(optimizer="rmsprop"), 5)
    with pytest.raises(UserError, match="unknown schedule 'linear'"):
        training.make_schedule(config.TrainConfig(schedule="linear"), 5)
    with pytest.raises(UserError, match="unknown strategy 'horovod'"):
        training.make_strategy("horovod")


def test_label_smoothing_matches_the_formula():
    loss = training.sparse_categorical_loss(num_classes=4, label_smoothing=0.2)
    logits = np.array([[2.0, 0.5, -1.0, 0.0]], "float32")
    probabilities = np.exp(logits) / np.exp(logits).sum()
    target = np.full(4, 0.2 / 4)
    target[1] += 0.8
    expected = -(target * np.log(probabilities)).sum()
    assert float(loss(np.array([1]), logits)) == pytest.approx(expected, rel=1e-5)


def test_xla_follows_the_flag_and_defaults_to_the_hardware():
    assert training.use_xla(config.RunConfig(xla=True)) is True
    assert training.use_xla(config.RunConfig(xla=False)) is False
    assert training.use_xla(config.RunConfig()) == training.gpu_available()


class _StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _regression_splits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    return Splits(train=dataset, val=dataset, test=dataset)


def test_fit_learns_and_resumes_after_an_interruption(tmp_path, monkeypatch):
    cfg = config.BaseConfig()
    cfg.train.epochs, cfg.train.learning_rate, cfg.train.schedule = 4, 0.3, "constant"
    cfg.train.checkpoint_share = 1  # a backup at every epoch's end
    splits = _regression_splits()
    stage = str(tmp_path / "stage")

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    original = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks",
                        lambda *a, **k: original(*a, **k) + [_StopAtEpoch(2)])
    with pytest.raises(KeyboardInterrupt):
        training.fit(model(), splits, cfg, {"loss": "mse"}, stage)
    monkeypatch.setattr(training, "make_callbacks", original)
    history = training.fit(model(), splits, cfg, {"loss": "mse"}, stage)
    assert len(history["loss"]) == 2  # epochs 3 and 4 only: 1 and 2 were restored
    logged = training.read_history(stage)
    assert logged["epoch"] == [0, 1, 2, 3]
    assert logged["loss"][-1] < 0.5 * logged["loss"][0]
    assert os.path.exists(os.path.join(stage, training.BEST_WEIGHTS))


def test_checkpoint_clock_bounds_the_share_of_time_spent_writing(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: now[0])
    clock = training.CheckpointClock(0.02)
    assert clock.due()  # the first epoch's end always writes
    with clock.writing():
        now[0] += 0.5  # a write of 0.5 s ...
    now[0] += 24.9
    assert not clock.due()  # ... waits for 25 s of training (2%)
    now[0] += 0.1
    assert clock.due()
    assert training.CheckpointClock(1).due()
    with pytest.raises(UserError, match="train.checkpoint_share=0"):
        training.CheckpointClock(0)


def test_throttled_checkpoints_resume_from_the_last_write_and_keep_the_best(tmp_path,
                                                                            monkeypatch):
    cfg = config.BaseConfig()
    cfg.train.epochs, cfg.train.learning_rate, cfg.train.schedule = 4, 0.3, "constant"
    cfg.train.checkpoint_share = 1e-9  # after the first, no write is ever due
    stage = str(tmp_path / "stage")
    scores = iter([0.2, 0.9, 0.5, 0.1, 0.3, 0.95])

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    def score(trained):
        return {"accuracy": next(scores)}

    original = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks",
                        lambda *a, **k: original(*a, **k) + [_StopAtEpoch(3)])
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 3: no end-of-training write
        training.fit(model(), _regression_splits(), cfg, {"loss": "mse"}, stage,
                     monitor=("val_accuracy", "max"), validation_score=(score, "accuracy"))
    with open(os.path.join(stage, "backup", "training_metadata.json")) as handle:
        assert json.load(handle)["epoch"] == 1  # only the first epoch was written
    assert training.best_record(stage)["epoch"] == 1  # epoch 2's 0.9 was in memory
    monkeypatch.setattr(training, "make_callbacks", original)
    resumed = model()
    history = training.fit(resumed, _regression_splits(), cfg, {"loss": "mse"}, stage,
                           monitor=("val_accuracy", "max"),
                           validation_score=(score, "accuracy"))
    assert len(history["loss"]) == 3  # epochs 2-4 again, from the epoch-1 backup
    # The end of training writes the best epoch (epoch 4's 0.95 beat 0.2) and
    # the backup; the history keeps the rerun rows of epochs 2-3.
    assert training.best_record(stage) == {"value": 0.95, "epoch": 4,
                                           "monitor": "val_accuracy"}
    with open(os.path.join(stage, "backup", "training_metadata.json")) as handle:
        assert json.load(handle)["epoch"] == 4
    assert training.read_history(stage)["val_accuracy"] == pytest.approx([0.2, 0.1, 0.3, 0.95])


def test_explicit_steps_per_epoch_limits_each_epoch(tmp_path):
    cfg = config.BaseConfig()
    cfg.train.epochs = 2
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    history = training.fit(model, _regression_splits(), cfg, {"loss": "mse"},
                           str(tmp_path), steps_per_epoch=2)
    assert len(history["loss"]) == 2
    assert int(model.optimizer.iterations) == 4  # 2 epochs x 2 steps, not 2 x 4 batches


def test_nan_loss_stops_with_an_error_naming_stage_and_epoch(tmp_path):
    cfg = config.BaseConfig()
    cfg.train.epochs, cfg.train.learning_rate, cfg.train.schedule = 3, 0.1, "constant"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))

    def exploding(y_true, y_pred):  # finite for one epoch, then NaN
        step = keras.ops.cast(model.optimizer.iterations, "float32")
        return keras.ops.mean((y_true - y_pred) ** 2) + keras.ops.log(4.5 - step)

    with pytest.raises(training.TrainingDiverged, match=r"float training diverged: loss is nan "
                                                        r"at epoch 2, batch 2"):
        training.fit(model, _regression_splits(), cfg, {"loss": exploding},
                     str(tmp_path / "float"))
    # The backup holds the last finite epoch, so --resume starts from good weights.
    backup = tmp_path / "float" / "backup"
    with open(backup / "training_metadata.json") as handle:
        assert json.load(handle)["epoch"] == 1
    with np.load(backup / training.AtomicBackupAndRestore.VARIABLES_FILE) as saved:
        assert len(saved.files) == len(training.backup_variables(model))
        assert all(np.isfinite(saved[name]).all() for name in saved.files)


def test_a_kill_while_saving_the_backup_keeps_the_previous_one(tmp_path, monkeypatch):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    callback = training.AtomicBackupAndRestore(str(tmp_path / "backup"))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    callback.set_model(model)
    callback.on_epoch_end(0)
    name = training.AtomicBackupAndRestore.VARIABLES_FILE
    saved = (tmp_path / "backup" / name).read_bytes()

    def killed(path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        callback.on_epoch_end(1)
    assert (tmp_path / "backup" / name).read_bytes() == saved
    assert sorted(os.listdir(tmp_path / "backup")) == [name, "training_metadata.json"]
    with open(tmp_path / "backup" / "training_metadata.json") as handle:
        assert json.load(handle)["epoch"] == 1


def test_best_checkpoint_remembers_the_best_value_across_resumes(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    path = str(tmp_path / training.BEST_WEIGHTS)
    first = training.BestCheckpoint(str(tmp_path), "val_loss", "min")
    first.set_model(model)
    first.on_epoch_end(0, {"val_loss": 0.5})
    saved = open(path, "rb").read()
    resumed = training.BestCheckpoint(str(tmp_path), "val_loss", "min")  # a new process
    resumed.set_model(model)
    model.set_weights([w + 1 for w in model.get_weights()])
    resumed.on_epoch_end(1, {"val_loss": 0.7})  # worse: must not overwrite
    assert open(path, "rb").read() == saved
    resumed.on_epoch_end(2, {"val_loss": 0.4})
    assert open(path, "rb").read() != saved


def test_the_step_budget_sets_epochs_from_the_dataset_size():
    train = config.TrainConfig(epochs=10, min_steps=2400, max_epochs=300)
    assert training.epochs_for_budget(train, steps_per_epoch=4) == 300  # 50 images: capped
    assert training.epochs_for_budget(train, steps_per_epoch=40) == 60
    assert training.epochs_for_budget(train, steps_per_epoch=400) == 10  # enough already
    assert training.epochs_for_budget(config.TrainConfig(epochs=7), 4) == 7  # no budget


def test_short_passes_of_a_small_dataset_are_grouped_into_epochs():
    train = config.TrainConfig(epochs=12, min_steps=2000, max_epochs=100)
    # 51 images at batch 16: 100 passes of 4 steps become 14 epochs of 7 passes.
    assert training.group_short_epochs(train, 4, 100) == (7, 14)
    assert training.group_short_epochs(train, 40, 50) == (1, 50)  # long enough
    assert training.group_short_epochs(train, 4, 12) == (1, 12)  # the epochs asked for


def test_a_grouped_fit_makes_the_budgets_steps_with_fewer_epoch_ends(tmp_path):
    cfg = config.BaseConfig()
    cfg.train.epochs, cfg.train.min_steps, cfg.train.max_epochs = 2, 60, 100
    cfg.train.learning_rate, cfg.train.schedule = 0.1, "cosine"
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    scored = []

    def score(trained):
        scored.append(int(trained.optimizer.iterations))
        return {"accuracy": float(len(scored))}

    # 4 batches a pass: 15 passes reach 60 steps; grouped as 2 epochs of 7 passes.
    history = training.fit(model, _regression_splits(), cfg, {"loss": "mse"}, str(tmp_path),
                           monitor=("val_accuracy", "max"), validation_score=(score, "accuracy"))
    assert scored == [28, 56] and len(history["loss"]) == 2
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    # The cosine schedule ends where the steps end, not halfway.
    assert float(model.optimizer.learning_rate) < 0.02


def test_an_explicit_epochs_flag_turns_the_budget_off():
    from common import cli
    import tasks.segmentation as task

    parser = cli.add_run_arguments(__import__("argparse").ArgumentParser(), task)
    budgeted = cli.config_from_args(task, parser.parse_args(["--set", "train.min_steps=900"]))
    explicit = cli.config_from_args(task, parser.parse_args(["--epochs", "3"]))
    assert budgeted.train.min_steps == 900 and explicit.train.min_steps == 0


def test_fit_keeps_the_epoch_with_the_best_validation_score(tmp_path):
    cfg = config.BaseConfig()
    cfg.train.epochs, cfg.train.learning_rate, cfg.train.schedule = 4, 0.3, "constant"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    scores = iter([0.2, 0.9, 0.5, 0.1])  # epoch 2 is the best by the task's metric
    weights_by_epoch = []

    def score(trained):
        weights_by_epoch.append([w.copy() for w in trained.get_weights()])
        return {"accuracy": next(scores)}

    training.fit(model, _regression_splits(), cfg, {"loss": "mse"}, str(tmp_path),
                 monitor=("val_accuracy", "max"), validation_score=(score, "accuracy"))
    for kept, best in zip(model.get_weights(), weights_by_epoch[1]):
        np.testing.assert_array_equal(kept, best)
    logged = training.read_history(str(tmp_path))
    assert logged["val_accuracy"] == pytest.approx([0.2, 0.9, 0.5, 0.1])
    assert training.best_record(str(tmp_path)) == {"value": 0.9, "epoch": 2,
                                                   "monitor": "val_accuracy"}


def test_inverse_square_root_schedule_warms_up_then_decays_as_the_paper():
    from common.training import InverseSquareRootSchedule

    schedule = InverseSquareRootSchedule(1e-3, warmup_steps=100)
    rates = [float(schedule(step)) for step in (0, 49, 99, 399, 9999)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-3)
    # After the peak: proportional to 1 / sqrt(step).
    assert rates[3] == pytest.approx(1e-3 * (100 / 400) ** 0.5, rel=1e-5)
    assert rates[4] == pytest.approx(1e-4, rel=1e-5)
