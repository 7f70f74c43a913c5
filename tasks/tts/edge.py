"""INT8 calibration for the three LiteRT parts: real encoder inputs, the
decoder-step inputs of teacher-forced decoding of training sentences (run
through the float parts), and true mels for the post-net."""

import numpy as np

from common import artifacts
from tasks.tts import inference
from tasks.tts.audio import SILENCE


def representative_dataset(splits, cfg, edge):
    """Generator of (signature, {input name: batch-1 array}) pairs."""
    items = splits.train_items[:max(1, cfg.export.representative_samples)]
    raw = {key: artifacts.keras_raw_fn(part) for key, part in edge.items()}

    def generator():
        recorded = []

        def recording_step(feed):
            recorded.append({key: np.asarray(value) for key, value in feed.items()})
            return raw["decode_step"](feed)

        synthesizer = inference.Synthesizer(
            {"encode": raw["encode"], "decode_step": recording_step, "postnet": raw["postnet"]},
            cfg, seed=cfg.run.seed)
        width = cfg.model.max_decoder_steps * cfg.model.reduction
        for ids, mel in items:
            padded = np.zeros((1, cfg.model.max_text_length), np.int32)
            padded[0, :len(ids)] = ids
            yield "encode", {"text": padded}
            recorded.clear()
            synthesizer.decode(synthesizer.encode(ids), teacher_mel=mel)
            for feed in recorded[::2]:  # every other step: enough ranges, half the time
                yield "decode_step", feed
            frames = np.full((1, width, cfg.audio.n_mels), SILENCE, np.float32)
            frames[0, :len(mel)] = mel[:width]
            yield "postnet", {"mel": frames}
    return generator
