"""The host loop that drives the edge parts: encode once, decode_step until
the stop token (or the step budget), postnet once, then the vocoder.

The same loop runs the Keras parts and the LiteRT parts (raw functions in a
dict {"encode", "decode_step", "postnet"}), so both are scored alike.
Pre-net dropout masks are drawn here (numpy), so the LiteRT step holds no
random op.
"""

import numpy as np

from tasks.tts import audio as audio_lib
from tasks.tts import text as text_lib
from tasks.tts.audio import SILENCE

STATE_NAMES = ("attention_h", "attention_c", "decoder_h", "decoder_c", "context",
               "weights", "cumulative")


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [outputs[key] for key in sorted(outputs)]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class Synthesizer:
    """Text ids -> mel frames, stop probabilities and alignment, with the
    model's parts as raw functions."""

    def __init__(self, raw_fns, cfg, seed=0):
        self.raw = raw_fns
        self.cfg = cfg
        m = cfg.model
        self.n_mels, self.r = cfg.audio.n_mels, m.reduction
        self.max_text, self.max_steps = m.max_text_length, m.max_decoder_steps
        self.prenet_units, self.dropout = m.prenet_units, m.prenet_dropout
        memory_dim = 2 * m.encoder_lstm_units
        self.state_sizes = {"attention_h": m.attention_rnn_units,
                            "attention_c": m.attention_rnn_units,
                            "decoder_h": m.decoder_rnn_units, "decoder_c": m.decoder_rnn_units,
                            "context": memory_dim, "weights": self.max_text,
                            "cumulative": self.max_text}
        self.threshold = m.stop_threshold
        self.rng = np.random.default_rng(seed)

    def _noise(self):
        keep = self.rng.random((1, self.prenet_units)) >= self.dropout
        return (keep / (1.0 - self.dropout)).astype(np.float32)

    def encode(self, ids):
        ids = np.asarray(ids, np.int32)
        ids = ids[ids > 0]
        if len(ids) > self.max_text:
            raise text_lib.TextTooLongError(
                f"{len(ids)} symbols; the model reads at most {self.max_text}")
        padded = np.zeros((1, self.max_text), np.int32)
        padded[0, :len(ids)] = ids
        memory, processed, mask = _as_list(self.raw["encode"]({"text": padded}))
        return {"memory": np.asarray(memory, np.float32),
                "processed_memory": np.asarray(processed, np.float32),
                "mask": np.asarray(mask, np.float32)}

    def decode(self, encoded, teacher_mel=None):
        """(mel frames (F, n) before the post-net, stop probabilities per
        step, alignment (steps, symbols)). With `teacher_mel`, each step is
        fed the true previous frame and runs for its length."""
        states = {name: np.zeros((1, size), np.float32)
                  for name, size in self.state_sizes.items()}
        frame = np.full((1, self.n_mels), SILENCE, np.float32)
        steps = self.max_steps if teacher_mel is None else len(teacher_mel) // self.r
        frames, stops, alignment = [], [], []
        for step in range(steps):
            feed = dict(encoded, frame=frame, noise_1=self._noise(), noise_2=self._noise(),
                        **states)
            outputs = _as_list(self.raw["decode_step"](feed))
            step_frames = np.asarray(outputs[0], np.float32).reshape(self.r, self.n_mels)
            stop = 1.0 / (1.0 + np.exp(-float(np.asarray(outputs[1]).reshape(-1)[0])))
            states = {name: np.asarray(value, np.float32)
                      for name, value in zip(STATE_NAMES, outputs[2:])}
            frames.append(step_frames)
            stops.append(stop)
            alignment.append(states["weights"][0])
            if teacher_mel is None:
                frame = step_frames[-1:]
                if stop > self.threshold:
                    break
            else:
                frame = teacher_mel[(step + 1) * self.r - 1][None].astype(np.float32)
        return np.concatenate(frames), np.asarray(stops), np.stack(alignment)

    def postnet(self, mel):
        width = self.max_steps * self.r
        padded = np.full((1, width, self.n_mels), SILENCE, np.float32)
        padded[0, :len(mel)] = mel[:width]
        refined = _as_list(self.raw["postnet"]({"mel": padded}))[0]
        return np.asarray(refined, np.float32)[0, :len(mel)]

    def synthesize(self, ids, teacher_mel=None):
        encoded = self.encode(ids)
        mel, stops, alignment = self.decode(encoded, teacher_mel)
        text_length = int(encoded["mask"].sum())
        return {"mel": mel, "mel_postnet": self.postnet(mel), "stop": stops,
                "alignment": alignment[:, :text_length]}


def speak(raw_fns, cfg, text, seed=0):
    """(waveform, sample rate) of `text`: cut at sentence ends to fit the
    model, each piece synthesized and vocoded, joined with short pauses."""
    synthesizer = Synthesizer(raw_fns, cfg, seed)
    pieces, pause = [], np.zeros(int(0.15 * cfg.audio.sample_rate), np.float32)
    for chunk in text_lib.split_for_model(text, cfg.model.max_text_length):
        result = synthesizer.synthesize(text_lib.encode(chunk))
        pieces += [audio_lib.griffin_lim(result["mel_postnet"], cfg.audio), pause]
    return np.concatenate(pieces[:-1]), cfg.audio.sample_rate


def predict_fn_from_raw(raw_fns, cfg, info):
    """The predict function `metrics.score` expects: a batch of
    {"text", "teacher_mel"} -> one dict per example with the free-running
    synthesis ("free") and the teacher-forced one ("teacher")."""
    synthesizer = Synthesizer(raw_fns, cfg, seed=cfg.run.seed)

    def predict(inputs):
        results = []
        for ids, mel in zip(np.asarray(inputs["text"]), np.asarray(inputs["teacher_mel"])):
            results.append({"free": synthesizer.synthesize(ids),
                            "teacher": synthesizer.synthesize(ids, teacher_mel=mel)})
        return results
    return predict
