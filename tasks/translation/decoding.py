"""Host-side decoding: greedy and beam search over the edge parts.

Every artifact gives the same two functions (`{"encode", "decode_step"}`:
the Keras parts, or the signatures of one `.tflite`, float or INT8), so one
loop decodes them all. The decoder step reads and writes a fixed-length
key/value cache: each step costs one position, whatever the prefix length.

Beam search keeps `beam_size` hypotheses per sentence in one batch of
`batch * beam_size` rows (their caches reordered after each step), ranks
finished ones with the GNMT length penalty ((5 + length) / 6) ** alpha, and
stops when every hypothesis has produced [SEP]. Greedy decoding is beam
search with one beam.
"""

import numpy as np

from common.wordpiece import CLS, PAD, SEP
from tasks.translation import model as model_lib
from tasks.translation import text as text_lib


def _named(raw_fn, outputs, names):
    """Outputs of a raw function as a dict: Keras parts return dicts, a
    LiteRT signature a list in the order of its `output_names`."""
    if isinstance(outputs, dict):
        return {name: np.asarray(outputs[name]) for name in names}
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    order = getattr(raw_fn, "output_names", names)
    found = dict(zip(order, outputs))
    return {name: np.asarray(found[name]) for name in names}


class EdgeDecoder:
    """The encode / decode_step pair behind one artifact."""

    def __init__(self, raw_fns, cfg, info):
        self.encode_fn, self.step_fn = raw_fns["encode"], raw_fns["decode_step"]
        self.cfg = cfg
        vocabulary = info["target_vocabulary"]
        self.start_id, self.end_id, self.pad_id = (vocabulary.index(t) for t in (CLS, SEP, PAD))
        self.length = cfg.model.max_target_length

    def encode(self, source_ids):
        outputs = self.encode_fn(np.asarray(source_ids, np.int32))
        return _named(self.encode_fn, outputs, ["cross_cache"])["cross_cache"]

    def step(self, tokens, position, self_cache, cross_cache, source_ids):
        rows = tokens.shape[0]
        outputs = self.step_fn({
            "token": tokens.astype(np.int32).reshape(rows, 1),
            "index": np.full((rows, 1), position, np.int32),
            "self_cache": self_cache.astype(np.float32),
            "cross_cache": cross_cache.astype(np.float32),
            "source_ids": source_ids.astype(np.int32)})
        named = _named(self.step_fn, outputs, ["logits", "self_cache"])
        return named["logits"], named["self_cache"]

    def decode(self, source_ids, beam_size=1, length_penalty=0.6):
        """Source ids [B, S] -> target ids [B, T] ([SEP] then [PAD] after
        each translation) and the number of decoder steps run."""
        source_ids = np.asarray(source_ids, np.int32)
        batch = source_ids.shape[0]
        if batch == 0:
            return np.zeros([0, self.length], np.int32), 0
        beams = max(1, int(beam_size))
        cross_cache = np.repeat(self.encode(source_ids), beams, axis=0)
        sources = np.repeat(source_ids, beams, axis=0)
        cache = np.zeros((batch * beams,) + model_lib.cache_shape(self.cfg, self.length),
                         np.float32)
        tokens = np.full([batch * beams], self.start_id, np.int32)
        scores = np.zeros([batch, beams])
        scores[:, 1:] = -np.inf  # all beams start equal: keep one
        finished = np.zeros([batch, beams], bool)
        lengths = np.zeros([batch, beams], np.int32)
        sequences = np.full([batch, beams, self.length], self.pad_id, np.int32)
        steps = 0
        for position in range(self.length):
            logits, cache = self.step(tokens, position, cache, cross_cache, sources)
            steps += 1
            log_probabilities = _log_softmax(logits.astype(np.float64))
            vocabulary = log_probabilities.shape[-1]
            log_probabilities = log_probabilities.reshape(batch, beams, vocabulary)
            # A finished hypothesis continues with [PAD] at no cost.
            done = np.full(vocabulary, -np.inf)
            done[self.pad_id] = 0.0
            log_probabilities = np.where(finished[..., None], done, log_probabilities)
            total = (scores[..., None] + log_probabilities).reshape(batch, -1)
            best = np.argsort(-total, axis=1, kind="stable")[:, :beams]
            parents, chosen = best // vocabulary, (best % vocabulary).astype(np.int32)
            scores = np.take_along_axis(total, best, axis=1)
            sequences = np.take_along_axis(sequences, parents[..., None], axis=1)
            was_finished = np.take_along_axis(finished, parents, axis=1)
            lengths = np.take_along_axis(lengths, parents, axis=1) + ~was_finished
            sequences[:, :, position] = np.where(was_finished, self.pad_id, chosen)
            finished = was_finished | (chosen == self.end_id)
            rows = (np.arange(batch)[:, None] * beams + parents).reshape(-1)
            cache = cache[rows]
            tokens = chosen.reshape(-1)
            if finished.all():
                break
        penalty = ((5.0 + lengths) / 6.0) ** length_penalty
        normalized = np.where(np.isfinite(scores), scores / penalty, -np.inf)
        winner = normalized.argmax(axis=1)
        return sequences[np.arange(batch), winner], steps


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def greedy_without_cache(model_fn, source_ids, info, length):
    """Greedy decoding with the teacher-forcing model, re-reading the whole
    prefix at every step (no cache): the reference the cached decoders are
    tested against, and what scores a plain training model."""
    vocabulary = info["target_vocabulary"]
    start_id, end_id, pad_id = (vocabulary.index(t) for t in (CLS, SEP, PAD))
    source_ids = np.asarray(source_ids, np.int32)
    batch = source_ids.shape[0]
    decoder_ids = np.full([batch, length], pad_id, np.int32)
    decoder_ids[:, 0] = start_id
    output = np.full([batch, length], pad_id, np.int32)
    finished = np.zeros([batch], bool)
    for position in range(length):
        logits = np.asarray(model_fn({"source_ids": source_ids, "decoder_ids": decoder_ids}))
        best = logits[:, position].argmax(-1).astype(np.int32)
        best = np.where(finished, pad_id, best)
        output[:, position] = best
        finished |= best == end_id
        if position + 1 < length:
            decoder_ids[:, position + 1] = best
        if finished.all():
            break
    return output


def predict_fn_from_raw(raw_fn, cfg, info, decoding=None, beam_size=None):
    """predict_fn(inputs) -> translations (strings) for any artifact: the
    {encode, decode_step} functions of the edge parts (the model's
    `model.decoding`, beam or greedy), or a teacher-forcing raw function
    (greedy, without cache)."""
    decoding = decoding or cfg.model.decoding
    if decoding not in ("greedy", "beam"):
        from common.errors import UserError
        raise UserError(f"model.decoding={decoding!r}: expected greedy or beam")
    beams = 1 if decoding == "greedy" else (beam_size or cfg.model.beam_size)
    vocabulary = info["target_vocabulary"]
    if isinstance(raw_fn, dict):
        decoder = EdgeDecoder(raw_fn, cfg, info)

        def translate_ids(source_ids):
            return decoder.decode(source_ids, beams, cfg.model.length_penalty)[0]
    else:
        def translate_ids(source_ids):
            return greedy_without_cache(raw_fn, source_ids, info, cfg.model.max_target_length)

    def predict(inputs):
        source_ids = np.asarray(inputs["source_ids"] if isinstance(inputs, dict) else inputs)
        return [text_lib.ids_to_text(row, vocabulary) for row in translate_ids(source_ids)]
    return predict
