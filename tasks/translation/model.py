"""The Transformer of "Attention Is All You Need", from keras-hub layers.

Three views of the same weights:

- `build_model`: the training model (teacher forcing),
  `{source_ids [B, S], decoder_ids [B, T]} -> logits [B, T, V]`;
- `edge_model(model, cfg)`: two fixed-shape models built from the layers of
  any such model (float or QAT, found by name), for LiteRT and for the
  host decoders:
  `encode`: `source_ids [B, S] -> cross_cache [B, N, 2, S, heads, head_dim]`
  (the cross-attention keys and values of every decoder layer, computed once
  per sentence);
  `decode_step`: one target position at a time with a fixed-length
  self-attention cache, `{token [B, 1], index [B, 1], self_cache
  [B, N, 2, T, heads, head_dim], cross_cache, source_ids} -> {logits [B, V],
  self_cache}`. keras-hub's cached attention writes the new key/value with
  `ops.slice_update` (LiteRT's DYNAMIC_UPDATE_SLICE builtin) and masks the
  positions after `index`, so a step costs one position, not the prefix;
- `build_serving_model`: the SavedModel's `serving_default`, strings in,
  translations out, tokenization and greedy decoding inside the graph.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from common import qat, serving
from common.errors import UserError
from common.wordpiece import CLS, PAD, SEP
from tasks.translation import text as text_lib

MODEL_INPUTS = ("source_ids", "decoder_ids")
# The order `build_model` calls the embedding layer in.
EMBEDDING_CALLS = {"source": 0, "target": 1}


def sinusoid_table(length, dim):
    """The paper's position encodings, [length, dim]: sine on even
    channels, cosine on odd ones, wavelengths up to 10000 * 2 pi."""
    positions = np.arange(length)[:, None]
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(dim) // 2)) / dim)
    angles = positions * rates[None, :]
    table = np.where(np.arange(dim)[None, :] % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype("float32")


@keras.saving.register_keras_serializable(package="translation")
class SourceTargetEmbedding(keras.layers.Layer):
    """Source and target token embeddings times sqrt(dim) plus a position
    encoding (paper 3.4, 3.5), one matrix for both languages when `shared`.

    Called once per sequence: `layer(source_ids)` and `layer(target_ids,
    side="target")`; each call's output gets its own activation range in
    the QAT clone (`common.qat.range_name(name, call)`), which the edge
    parts apply where the training graph did.

    Positions are a table looked up from `start` (a decoder step adds the
    position it writes): sinusoidal and fixed, or learned. A lookup rather
    than sin/cos at run time keeps the LiteRT graph to GATHER ops.
    """

    # A table lookup, not a matmul: nothing for QAT to reach (common/quant_report.py).
    quantization_lookup = True

    def __init__(self, source_vocabulary_size, target_vocabulary_size, dim, max_length,
                 positions="sinusoidal", shared=True, **kwargs):
        super().__init__(**kwargs)
        if positions not in ("sinusoidal", "learned"):
            raise UserError(f"model.positions={positions!r}: expected sinusoidal or learned")
        if shared and source_vocabulary_size != target_vocabulary_size:
            raise UserError("shared embeddings need one vocabulary for both languages")
        self.source_vocabulary_size = int(source_vocabulary_size)
        self.target_vocabulary_size = int(target_vocabulary_size)
        self.dim, self.max_length = int(dim), int(max_length)
        self.positions, self.shared = positions, bool(shared)

    def build(self, *input_shapes):
        initializer = keras.initializers.RandomNormal(stddev=self.dim ** -0.5)
        self.source_embeddings = self.add_weight(
            shape=(self.source_vocabulary_size, self.dim), name="source_embeddings",
            initializer=initializer)
        self.target_embeddings = self.source_embeddings if self.shared else self.add_weight(
            shape=(self.target_vocabulary_size, self.dim), name="target_embeddings",
            initializer=initializer)
        learned = self.positions == "learned"
        self.position_embeddings = self.add_weight(
            shape=(self.max_length, self.dim), name="position_embeddings",
            initializer=(keras.initializers.RandomNormal(stddev=0.02) if learned else
                         keras.initializers.Constant(sinusoid_table(self.max_length,
                                                                    self.dim))),
            trainable=learned)

    def _embed(self, table, token_ids, start):
        tokens = ops.take(table, ops.cast(token_ids, "int32"), axis=0)
        length = ops.shape(token_ids)[1]
        positions = ops.arange(length, dtype="int32") + ops.cast(start, "int32")
        return tokens * ops.cast(math.sqrt(self.dim), tokens.dtype) + \
            ops.take(self.position_embeddings, positions, axis=0)[None]

    def call(self, token_ids, side="source", start=0):
        if side not in ("source", "target"):
            raise ValueError(f"side={side!r}: expected 'source' or 'target'")
        table = self.source_embeddings if side == "source" else self.target_embeddings
        return self._embed(table, token_ids, start)

    def compute_output_spec(self, token_ids, side="source", start=0):
        return keras.KerasTensor(tuple(token_ids.shape) + (self.dim,), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(source_vocabulary_size=self.source_vocabulary_size,
                      target_vocabulary_size=self.target_vocabulary_size, dim=self.dim,
                      max_length=self.max_length, positions=self.positions,
                      shared=self.shared)
        return config


@keras.saving.register_keras_serializable(package="translation")
class PaddingMask(keras.layers.Layer):
    """Token ids -> bool mask, True where the id is not [PAD] (id 0)."""

    def call(self, token_ids):
        return ops.not_equal(ops.cast(token_ids, "int32"), 0)

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor(token_ids.shape, dtype="bool")


@keras.saving.register_keras_serializable(package="translation")
class StepIndex(keras.layers.Layer):
    """index [B, 1] -> the scalar position a decoder step writes (every row
    of a batch decodes the same position)."""

    quantization_pass_through = True

    def call(self, index):
        return ops.cast(index[0, 0], "int32")

    def compute_output_spec(self, index):
        return keras.KerasTensor((), dtype="int32")


@keras.saving.register_keras_serializable(package="translation")
class MaskedSmoothedCrossentropy(keras.losses.Loss):
    """Label-smoothed cross-entropy over target tokens, [PAD] labels ignored,
    averaged per real token (the paper's label smoothing 0.1)."""

    def __init__(self, vocabulary_size, label_smoothing=0.1,
                 name="masked_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.vocabulary_size, self.label_smoothing = int(vocabulary_size), label_smoothing

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(labels, 0), y_pred.dtype)
        loss = keras.losses.categorical_crossentropy(
            ops.one_hot(labels, self.vocabulary_size), y_pred, from_logits=True,
            label_smoothing=self.label_smoothing)
        return loss * mask / ops.maximum(ops.mean(mask), 1e-6)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size,
                      label_smoothing=self.label_smoothing)
        return config


@keras.saving.register_keras_serializable(package="translation")
class MaskedTokenAccuracy(keras.metrics.Metric):
    """Share of non-[PAD] target tokens predicted right under teacher forcing."""

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.total = self.add_variable((), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(y_true, "int32")
        mask = ops.not_equal(labels, 0)
        right = mask & ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels)
        self.correct.assign_add(ops.sum(ops.cast(right, "float32")))
        self.total.assign_add(ops.sum(ops.cast(mask, "float32")))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


def build_model(cfg, info):
    """{source_ids [B, S], decoder_ids [B, T]} -> logits [B, T, target vocabulary]."""
    import keras_hub

    options = cfg.model
    if options.hidden_dim % options.num_heads:
        raise UserError(f"model.hidden_dim={options.hidden_dim} must be divisible by "
                        f"model.num_heads={options.num_heads}")
    source_size = len(info["source_vocabulary"])
    target_size = len(info["target_vocabulary"])
    source_ids = keras.Input((options.max_source_length,), dtype="int32", name="source_ids")
    decoder_ids = keras.Input((options.max_target_length,), dtype="int32", name="decoder_ids")
    if options.shared_embeddings and info["source_vocabulary"] != info["target_vocabulary"]:
        raise UserError("model.shared_embeddings needs one joint vocabulary")
    embedding = SourceTargetEmbedding(
        source_size, target_size, options.hidden_dim,
        max(options.max_source_length, options.max_target_length), options.positions,
        shared=options.shared_embeddings, name="embedding")
    # Source first, then target: the QAT clone numbers the calls' ranges
    # in this order (EMBEDDING_CALLS).
    source_embedded = embedding(source_ids)
    target_embedded = embedding(decoder_ids, side="target")
    # === Encoder ===
    source_mask = PaddingMask(name="source_mask")(source_ids)
    x = keras.layers.Dropout(options.dropout, name="source_dropout")(source_embedded)
    for index in range(options.encoder_layers):
        x = keras_hub.layers.TransformerEncoder(
            options.intermediate_dim, options.num_heads, dropout=options.dropout,
            normalize_first=options.normalize_first, name=f"encoder_{index}")(
                x, padding_mask=source_mask)
    if options.normalize_first:
        x = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)
    # === Decoder ===
    # Only the causal mask: [PAD] comes after [SEP], where the loss ignores
    # the labels, so the teacher-forced model computes exactly what the
    # cached decoder step computes (which has no padding to mask).
    y = keras.layers.Dropout(options.dropout, name="target_dropout")(target_embedded)
    for index in range(options.decoder_layers):
        y = keras_hub.layers.TransformerDecoder(
            options.intermediate_dim, options.num_heads, dropout=options.dropout,
            normalize_first=options.normalize_first, name=f"decoder_{index}")(
                y, x, encoder_padding_mask=source_mask)
    if options.normalize_first:
        y = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(y)
    logits = keras.layers.Dense(target_size, name="logits", dtype="float32")(y)
    return keras.Model({"source_ids": source_ids, "decoder_ids": decoder_ids}, logits,
                       name="transformer")


def compile_args(cfg, info):
    return {
        "loss": MaskedSmoothedCrossentropy(len(info["target_vocabulary"]),
                                           cfg.train.label_smoothing),
        "metrics": [MaskedTokenAccuracy()],
    }


# --- the edge parts ------------------------------------------------------------

class _Layers:
    """The layers of a training model by role, float or QAT alike: a QAT
    model holds the same names (Transformer layers inside
    `QuantizedSublayers`), plus `<name>_fq` activation ranges that the parts
    apply where the training graph did."""

    def __init__(self, model, cfg):
        self.by_name = {layer.name: layer for layer in model.layers}
        self.cfg = cfg
        self.embedding = self.get("embedding")
        self.encoders = [self.get(f"encoder_{i}") for i in range(cfg.model.encoder_layers)]
        self.decoders = [self.get(f"decoder_{i}") for i in range(cfg.model.decoder_layers)]
        self.logits = self.get("logits")

    def get(self, name):
        if name not in self.by_name:
            raise UserError(f"the translation model has no layer {name!r} (layers: "
                            f"{', '.join(sorted(self.by_name))[:300]})")
        return self.by_name[name]

    def apply(self, name, tensor, call=0):
        """`tensor` through the activation range the QAT graph put after
        call `call` of layer `name` (none in a float model)."""
        range_name = qat.range_name(name, call)
        return self.by_name[range_name](tensor) if range_name in self.by_name else tensor

    def optional(self, name, tensor):
        return self.by_name[name](tensor) if name in self.by_name else tensor


def _inner(layer):
    """A keras-hub layer, unwrapped from QAT's `QuantizedSublayers`."""
    return getattr(layer, "layer", layer)


class CrossAttentionCache(keras.layers.Layer):
    """Encoder output [B, S, dim] -> the keys and values one decoder layer's
    cross-attention reads, [B, 2, S, dim] (heads merged, as the cache
    travels). Computed once per sentence by `encode`. Never saved."""

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.decoder = decoder

    def call(self, encoded):
        attention = _inner(self.decoder)._cross_attention_layer
        pair = ops.stack([attention._key_dense(encoded), attention._value_dense(encoded)],
                         axis=1)
        return ops.reshape(pair, (-1, 2, encoded.shape[1], encoded.shape[2]))

    def compute_output_spec(self, encoded):
        return keras.KerasTensor((encoded.shape[0], 2) + tuple(encoded.shape[1:]),
                                 dtype=encoded.dtype)


class CachedDecoderCall(keras.layers.Layer):
    """One decoder layer called with its caches inside a Functional graph
    (keras-hub's symbolic call does not describe the cached outputs).
    Never saved: the edge parts are rebuilt from the training model."""

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.decoder = decoder

    def call(self, sequence, encoder_sequence, source_mask, self_cache, cross_cache,
             position):
        # Caches travel with heads and head size merged (LiteRT's slicing
        # kernels stop at 5 dimensions); keras-hub wants them apart.
        merged_shape = ops.shape(self_cache)
        heads = _inner(self.decoder).num_heads
        self_cache = ops.reshape(self_cache, (-1, 2, self_cache.shape[2], heads,
                                              self_cache.shape[3] // heads))
        cross_cache = ops.reshape(cross_cache, (-1, 2, cross_cache.shape[2], heads,
                                                cross_cache.shape[3] // heads))
        # The causal mask in integers: keras-hub builds it from the position
        # cast to float (`arange + float(index) >= arange`), a tensor QAT
        # gives no range; INT8 calibration then gave it an int8 scale, and
        # the rounded position masked the step's own key or, past the
        # calibrated lengths, every later one (6.8 BLEU of the INT8 loss).
        keys = ops.arange(self_cache.shape[2], dtype="int32")
        visible = ops.less_equal(keys, ops.cast(position, "int32"))
        causal_mask = ops.broadcast_to(visible[None, None, :],
                                       (ops.shape(sequence)[0], 1, self_cache.shape[2]))
        # The keras-hub layer itself (its sublayers already carry QAT's
        # fake-quant): QAT's wrapper takes keyword arguments as one nested
        # structure, which Keras refuses to mix tensors and a Python bool in.
        outputs, self_cache, _ = _inner(self.decoder)(
            sequence, encoder_sequence, encoder_padding_mask=source_mask,
            decoder_attention_mask=causal_mask, use_causal_mask=False,
            self_attention_cache=self_cache, self_attention_cache_update_index=position,
            cross_attention_cache=cross_cache, cross_attention_cache_update_index=None)
        return outputs, ops.reshape(self_cache, merged_shape)

    def compute_output_spec(self, sequence, encoder_sequence, source_mask, self_cache,
                            cross_cache, position):
        return (keras.KerasTensor(sequence.shape, dtype=sequence.dtype),
                keras.KerasTensor(self_cache.shape, dtype=self_cache.dtype))


def cache_shape(cfg, length):
    """[layers, 2 (key, value), length, heads * head_dim] of one example:
    5 dimensions with the batch, the most LiteRT's slicing kernels take."""
    options = cfg.model
    return (options.decoder_layers, 2, length, options.hidden_dim)


def build_encode(layers, cfg):
    options = cfg.model
    source_ids = keras.Input((options.max_source_length,), dtype="int32", name="source_ids")
    source_mask = PaddingMask(name="source_mask")(source_ids)
    x = layers.embedding(source_ids)
    x = layers.apply("embedding", x, EMBEDDING_CALLS["source"])
    for encoder in layers.encoders:
        x = encoder(x, padding_mask=source_mask)
    x = layers.apply("encoder_norm", layers.optional("encoder_norm", x))
    caches = [CrossAttentionCache(decoder, name=f"{decoder.name}_cross_cache")(x)
              for decoder in layers.decoders]
    cross_cache = ops.stack(caches, axis=1)
    return keras.Model(source_ids, {"cross_cache": cross_cache}, name="encode")


def build_decode_step(layers, cfg):
    options = cfg.model
    token = keras.Input((1,), dtype="int32", name="token")
    index = keras.Input((1,), dtype="int32", name="index")
    self_cache = keras.Input(cache_shape(cfg, options.max_target_length), name="self_cache")
    cross_cache = keras.Input(cache_shape(cfg, options.max_source_length), name="cross_cache")
    source_ids = keras.Input((options.max_source_length,), dtype="int32", name="source_ids")
    source_mask = PaddingMask(name="source_mask")(source_ids)
    position = StepIndex(name="step_index")(index)
    y = layers.embedding(token, side="target", start=position)
    y = layers.apply("embedding", y, EMBEDDING_CALLS["target"])
    new_caches = []
    for number, decoder in enumerate(layers.decoders):
        layer_cross = cross_cache[:, number]
        # keras-hub needs an encoder sequence to shape the cross-attention
        # mask; with a cross cache and no update index its values are unused.
        y, layer_cache = CachedDecoderCall(decoder, name=f"{decoder.name}_step")(
            y, layer_cross[:, 0], source_mask, self_cache[:, number], layer_cross,
            position)
        new_caches.append(layer_cache)
    y = layers.apply("decoder_norm", layers.optional("decoder_norm", y))
    logits = layers.apply("logits", layers.logits(y))
    return keras.Model(
        {"token": token, "index": index, "self_cache": self_cache,
         "cross_cache": cross_cache, "source_ids": source_ids},
        {"logits": logits[:, 0, :], "self_cache": ops.stack(new_caches, axis=1)},
        name="decode_step")


def edge_model(model, cfg):
    """{"encode": Model, "decode_step": Model} from the layers of `model`."""
    layers = _Layers(model, cfg)
    return {"encode": build_encode(layers, cfg), "decode_step": build_decode_step(layers, cfg)}


# --- TF Serving ------------------------------------------------------------------

def build_serving_model(model, cfg, info):
    """TF Serving endpoint: `text` [N] strings in, `translation` [N] strings
    and `truncated` [N] bool (the source was cut at the maximum length) out.

    Tokenization, greedy decoding with the key/value cache (a `tf.while_loop`
    over the decoder step) and detokenization all run inside the graph in
    core TF ops. An empty batch answers empty outputs; an empty (or
    whitespace-only) text translates to "". Requests over
    `export.serving_max_batch` texts or with a text over
    `export.serving_max_text_bytes` bytes are refused with
    InvalidArgumentError (`common/serving.py`); a text longer than
    `model.max_source_length` tokens is cut and flagged in `truncated`.
    """
    limits = cfg.export
    parts = edge_model(model, cfg)
    encode, step = parts["encode"], parts["decode_step"]
    source_tokenizer, _ = text_lib.tokenizers(info, cfg)
    model._serving_tokenizer = source_tokenizer  # tracked: its lookup table is saved
    vocabulary = info["target_vocabulary"]
    start_id, end_id, pad_id = (vocabulary.index(t) for t in (CLS, SEP, PAD))
    specials = sorted({vocabulary.index(t) for t in (CLS, SEP, PAD)})
    length = cfg.model.max_target_length
    self_shape = cache_shape(cfg, length)

    def translate(text):
        text = serving.check_shape(text, ("batch",), "text")
        text = serving.check_batch(text, limits.serving_max_batch)
        text = serving.check_text(text, limits.serving_max_text_bytes)
        source_ids, truncated = source_tokenizer.tokenize(text)
        batch = tf.shape(source_ids)[0]
        cross_cache = encode(source_ids)["cross_cache"]

        def body(position, token, cache, finished, generated):
            outputs = step({"token": token, "index": tf.fill([batch, 1], position),
                            "self_cache": cache, "cross_cache": cross_cache,
                            "source_ids": source_ids})
            best = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
            best = tf.where(finished, pad_id, best)
            column = tf.one_hot(position, length, dtype=tf.int32)[None, :]
            generated = generated + column * best[:, None]
            return (position + 1, best[:, None], outputs["self_cache"],
                    finished | tf.equal(best, end_id), generated)

        def not_done(position, token, cache, finished, generated):
            return (position < length) & tf.logical_not(tf.reduce_all(finished))

        _, _, _, _, generated = tf.while_loop(
            not_done, body,
            (tf.constant(0), tf.fill([batch, 1], start_id),
             tf.zeros(tf.concat([[batch], self_shape], axis=0)),
             tf.zeros([batch], tf.bool), tf.zeros([batch, length], tf.int32)),
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, 1]),
                              tf.TensorShape([None, *self_shape]), tf.TensorShape([None]),
                              tf.TensorShape([None, length])))
        translation = text_lib.ids_to_text_graph(generated, vocabulary, specials)
        empty = tf.equal(tf.strings.strip(text), "")
        return {"translation": tf.where(empty, "", translation),
                "truncated": truncated & tf.logical_not(empty)}

    return {"serving_default": (translate, [serving.request_spec(tf.string, "text")])}
