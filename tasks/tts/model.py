"""Tacotron 2 (Shen et al., 2018) in Keras 3.

Encoder: character embedding, 3 convolutions (batch norm, ReLU, dropout),
a bidirectional LSTM. Decoder: a pre-net whose dropout stays on at
inference, an attention LSTM, location-sensitive attention over the
encoder outputs, a decoder LSTM, and projections to `reduction` mel frames
and a stop token per step. A 5-layer convolutional post-net adds a residual.

Training is teacher-forced: the whole decoder loop runs inside one layer
(`tf.scan`, no Python per step). For LiteRT the same layers are
re-wired into fixed-shape parts driven by a host loop (`edge_model`):
`encode` (text -> encoder outputs, processed memory, mask), `decode_step`
(previous frame, pre-net dropout masks, LSTM states, attention weights ->
frames, stop logit, new states) and `postnet`.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from common.errors import UserError
from tasks.tts import text as text_lib
from tasks.tts.audio import SILENCE


@keras.saving.register_keras_serializable(package="tts")
class DecoderInputs(layers.Layer):
    """Mel frames (B, F, n) -> the teacher-forcing input of each decoder step
    (B, F / r, n): the last frame of the previous step, a silent frame first."""

    def __init__(self, reduction, n_mels, **kwargs):
        super().__init__(**kwargs)
        self.reduction, self.n_mels = reduction, n_mels

    def call(self, mel):
        grouped = ops.reshape(mel, (ops.shape(mel)[0], -1, self.reduction, self.n_mels))
        last = grouped[:, :, -1, :]
        go = ops.full_like(last[:, :1], SILENCE)
        return ops.concatenate([go, last[:, :-1]], axis=1)

    def get_config(self):
        return dict(super().get_config(), reduction=self.reduction, n_mels=self.n_mels)


@keras.saving.register_keras_serializable(package="tts")
class EncoderLSTM(layers.Layer):
    """Bidirectional LSTM over the padded symbols; padding (id 0) neither
    updates the states nor reaches the outputs (zeroed). `unroll` gives the
    fixed-length form LiteRT converts without WHILE loops."""

    def __init__(self, units, unroll=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.unroll = units, unroll
        self.forward_lstm = layers.LSTM(units, return_sequences=True, unroll=unroll,
                                        name="forward")
        self.backward_lstm = layers.LSTM(units, return_sequences=True, go_backwards=True,
                                         unroll=unroll, name="backward")

    def build(self, input_shape):
        features_shape = input_shape[0]
        self.forward_lstm.build(features_shape)
        self.backward_lstm.build(features_shape)

    def call(self, inputs):
        features, text = inputs
        mask = ops.not_equal(text, 0)
        forward = self.forward_lstm(features, mask=mask)
        backward = ops.flip(self.backward_lstm(features, mask=mask), axis=1)
        keep = ops.expand_dims(ops.cast(mask, features.dtype), -1)
        return ops.concatenate([forward, backward], axis=-1) * keep

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (2 * self.units,)

    def get_config(self):
        return dict(super().get_config(), units=self.units, unroll=self.unroll)


@keras.saving.register_keras_serializable(package="tts")
class TacotronDecoder(layers.Layer):
    """Pre-net, attention LSTM, location-sensitive attention, decoder LSTM,
    frame and stop projections. `call` runs the teacher-forced loop;
    `step` is one decoder step for the host loop and for serving."""

    def __init__(self, n_mels, reduction, prenet_units, prenet_dropout,
                 attention_rnn_units, decoder_rnn_units, attention_dim,
                 location_filters, location_kernel, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.n_mels, self.reduction = n_mels, reduction
        self.prenet_units, self.prenet_dropout = prenet_units, prenet_dropout
        self.attention_rnn_units, self.decoder_rnn_units = attention_rnn_units, decoder_rnn_units
        self.attention_dim = attention_dim
        self.location_filters, self.location_kernel = location_filters, location_kernel
        self.seed = seed
        self.prenet_1 = layers.Dense(prenet_units, activation="relu", name="prenet_1")
        self.prenet_2 = layers.Dense(prenet_units, activation="relu", name="prenet_2")
        self.attention_lstm = layers.LSTMCell(attention_rnn_units, name="attention_lstm")
        self.memory_layer = layers.Dense(attention_dim, name="memory_layer")
        self.query_layer = layers.Dense(attention_dim, use_bias=False, name="query_layer")
        self.location_conv = layers.Conv1D(location_filters, location_kernel, padding="same",
                                           use_bias=False, name="location_conv")
        self.location_layer = layers.Dense(attention_dim, use_bias=False,
                                           name="location_layer")
        self.energy_layer = layers.Dense(1, use_bias=False, name="energy_layer")
        self.decoder_lstm = layers.LSTMCell(decoder_rnn_units, name="decoder_lstm")
        self.frame_projection = layers.Dense(n_mels * reduction, name="frame_projection")
        self.stop_projection = layers.Dense(1, name="stop_projection")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        memory_dim = input_shape[0][-1]
        self.memory_dim = memory_dim
        self.prenet_1.build((None, self.n_mels))
        self.prenet_2.build((None, self.prenet_units))
        self.attention_lstm.build((None, self.prenet_units + memory_dim))
        self.memory_layer.build((None, None, memory_dim))
        self.query_layer.build((None, self.attention_rnn_units))
        self.location_conv.build((None, None, 2))
        self.location_layer.build((None, None, self.location_filters))
        self.energy_layer.build((None, None, self.attention_dim))
        self.decoder_lstm.build((None, self.attention_rnn_units + memory_dim))
        self.frame_projection.build((None, self.decoder_rnn_units + memory_dim))
        self.stop_projection.build((None, self.decoder_rnn_units + memory_dim))

    def prenet(self, frames, noise_1=None, noise_2=None):
        """Pre-net with dropout always on; the masks are drawn here, or given
        (the host loop draws them, so the LiteRT model has no random ops)."""
        hidden = self.prenet_1(frames)
        if noise_1 is None:
            hidden = keras.random.dropout(hidden, self.prenet_dropout, seed=self.seed_generator)
        else:
            hidden = hidden * noise_1
        hidden = self.prenet_2(hidden)
        if noise_2 is None:
            return keras.random.dropout(hidden, self.prenet_dropout, seed=self.seed_generator)
        return hidden * noise_2

    def attend(self, prenet_output, states, memory, processed_memory, mask):
        """One step after the pre-net: (projection input, new states).

        `states` = (attention h, attention c, decoder h, decoder c, context,
        attention weights, cumulative attention weights). Padding gets
        energies MASK_OFFSET lower (exp(-20) ~ 2e-9 of the weight), a moderate
        constant so that the energies' int8 range stays usable.
        """
        attention_h, attention_c, decoder_h, decoder_c, context, weights, cumulative = states
        _, (attention_h, attention_c) = self.attention_lstm(
            ops.concatenate([prenet_output, context], axis=-1), [attention_h, attention_c])
        location = self.location_conv(ops.stack([weights, cumulative], axis=-1))
        query = ops.expand_dims(self.query_layer(attention_h), 1)
        energies = ops.squeeze(self.energy_layer(ops.tanh(
            query + processed_memory + self.location_layer(location))), -1)
        # Padding is pushed MASK_OFFSET below the energies before a plain
        # softmax: LiteRT's int8 SOFTMAX has a fixed output range, while an
        # exp-times-mask-over-sum form became an int8 DIV whose divisor could
        # round to its zero point (measured: "div.cc data[i] != zero_point").
        weights = ops.softmax(energies + (mask - 1.0) * MASK_OFFSET, axis=-1)
        cumulative = cumulative + weights
        context = ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), memory), 1)
        _, (decoder_h, decoder_c) = self.decoder_lstm(
            ops.concatenate([attention_h, context], axis=-1), [decoder_h, decoder_c])
        projection_input = ops.concatenate([decoder_h, context], axis=-1)
        return projection_input, (attention_h, attention_c, decoder_h, decoder_c, context,
                                  weights, cumulative)

    def initial_states(self, memory):
        batch, length = ops.shape(memory)[0], ops.shape(memory)[1]
        zeros = lambda size: ops.zeros((batch, size), memory.dtype)
        return (zeros(self.attention_rnn_units), zeros(self.attention_rnn_units),
                zeros(self.decoder_rnn_units), zeros(self.decoder_rnn_units),
                zeros(self.memory_dim), ops.zeros((batch, length), memory.dtype),
                ops.zeros((batch, length), memory.dtype))

    def call(self, inputs):
        memory, text, decoder_inputs = inputs
        mask = ops.cast(ops.not_equal(text, 0), memory.dtype)
        processed_memory = self.memory_layer(memory)
        prenet_outputs = self.prenet(decoder_inputs)                 # (B, S, P)

        def one_step(accumulated, prenet_output):
            projection_input, states = self.attend(prenet_output, accumulated[0], memory,
                                                   processed_memory, mask)
            return states, projection_input

        initial = self.initial_states(memory)
        projection_width = self.decoder_rnn_units + self.memory_dim
        # tf.scan stacks every step's accumulator: the states (their weights
        # are the alignment) and the projection input.
        states, projection_inputs = tf.scan(
            one_step, ops.transpose(prenet_outputs, (1, 0, 2)),
            initializer=(initial, ops.zeros((ops.shape(memory)[0], projection_width), memory.dtype)))
        alignments = states[5]
        projection_inputs = ops.transpose(projection_inputs, (1, 0, 2))
        frames = self.frame_projection(projection_inputs)
        stop = ops.squeeze(self.stop_projection(projection_inputs), -1)
        return frames, stop, ops.transpose(alignments, (1, 0, 2))

    def compute_output_shape(self, input_shape):
        memory_shape, _, inputs_shape = input_shape
        batch, steps = inputs_shape[0], inputs_shape[1]
        return ((batch, steps, self.n_mels * self.reduction), (batch, steps),
                (batch, steps, memory_shape[1]))

    def get_config(self):
        return dict(super().get_config(), n_mels=self.n_mels, reduction=self.reduction,
                    prenet_units=self.prenet_units, prenet_dropout=self.prenet_dropout,
                    attention_rnn_units=self.attention_rnn_units,
                    decoder_rnn_units=self.decoder_rnn_units,
                    attention_dim=self.attention_dim, location_filters=self.location_filters,
                    location_kernel=self.location_kernel, seed=self.seed)


def custom_objects():
    return {"DecoderInputs": DecoderInputs, "EncoderLSTM": EncoderLSTM,
            "TacotronDecoder": TacotronDecoder, "guided_attention_loss": guided_attention_loss}


# Moving statistics that settle within a few hundred steps (Keras's 0.99
# keeps ~20% of the initial mean/variance after 150 steps, and the
# inference-mode post-net was then worse than the untrained one on the
# overfitting test).
BATCH_NORM_MOMENTUM = 0.9
MASK_OFFSET = 20.0


# --- the training model -------------------------------------------------------------

def _encoder_features(text, cfg, model=None):
    """Embedding and convolutions; with `model`, its trained layers are reused."""
    m = cfg.model
    # `make` is called at once, inside its loop iteration (hence the noqa B023).
    get = (lambda name, make: model.get_layer(name)) if model is not None else \
        (lambda name, make: make())
    x = get("embedding", lambda: layers.Embedding(len(text_lib.SYMBOLS), m.embedding_dim,
                                                  name="embedding"))(text)
    for index in range(m.encoder_convolutions):
        x = get(f"encoder_conv_{index}", lambda: layers.Conv1D(
            m.encoder_filters, m.encoder_kernel, padding="same",
            name=f"encoder_conv_{index}"))(x)  # noqa: B023
        x = get(f"encoder_bn_{index}", lambda: layers.BatchNormalization(
            momentum=BATCH_NORM_MOMENTUM, name=f"encoder_bn_{index}"))(x)  # noqa: B023
        x = layers.ReLU()(x)
        if model is None:
            x = layers.Dropout(m.dropout, name=f"encoder_dropout_{index}")(x)
    return x


def _postnet(mel, cfg, model=None):
    m = cfg.model
    get = (lambda name, make: model.get_layer(name)) if model is not None else \
        (lambda name, make: make())
    x = mel
    for index in range(m.postnet_layers):
        last = index == m.postnet_layers - 1
        x = get(f"postnet_conv_{index}", lambda: layers.Conv1D(
            cfg.audio.n_mels if last else m.postnet_filters, m.postnet_kernel,  # noqa: B023
            padding="same", name=f"postnet_conv_{index}"))(x)  # noqa: B023
        x = get(f"postnet_bn_{index}", lambda: layers.BatchNormalization(
            momentum=BATCH_NORM_MOMENTUM, name=f"postnet_bn_{index}"))(x)  # noqa: B023
        if not last:
            x = layers.Activation("tanh")(x)
        if model is None:
            x = layers.Dropout(m.dropout, name=f"postnet_dropout_{index}")(x)
    return x


def build_model(cfg, info=None):
    """The teacher-forced training model: {"text", "teacher_mel"} ->
    {"mel", "mel_postnet", "stop" (logits), "alignment"}."""
    m, n_mels = cfg.model, cfg.audio.n_mels
    text = keras.Input((None,), dtype="int32", name="text")
    mel = keras.Input((None, n_mels), name="teacher_mel")
    features = _encoder_features(text, cfg)
    memory = EncoderLSTM(m.encoder_lstm_units, name="encoder_lstm")([features, text])
    decoder_inputs = DecoderInputs(m.reduction, n_mels, name="decoder_inputs")(mel)
    frames, stop, alignment = TacotronDecoder(
        n_mels, m.reduction, m.prenet_units, m.prenet_dropout, m.attention_rnn_units,
        m.decoder_rnn_units, m.attention_dim, m.location_filters, m.location_kernel,
        seed=cfg.run.seed, name="decoder")([memory, text, decoder_inputs])
    mel_before = layers.Reshape((-1, n_mels), name="mel_frames")(frames)
    mel_before = layers.Identity(name="mel")(mel_before)
    mel_after = layers.Add(name="mel_postnet")([mel_before, _postnet(mel_before, cfg)])
    outputs = {"mel": mel_before, "mel_postnet": mel_after,
               "stop": layers.Identity(name="stop")(stop),
               "alignment": layers.Identity(name="alignment")(alignment)}
    model = keras.Model({"text": text, "teacher_mel": mel}, outputs, name="tacotron2")
    if m.init:
        load_init_weights(model, m.init)
    return model


def load_init_weights(model, init):
    """The weights of an earlier run's model.keras (`init`: the file or its
    run folder) into `model`; a missing file or other model sizes stop the
    run naming them."""
    path = os.path.join(init, "model.keras") if os.path.isdir(init) else init
    if not os.path.isfile(path):
        raise UserError(f"--init {init}: no such file {path!r}; expected a TTS run folder "
                        "or its model.keras")
    try:
        source = keras.saving.load_model(path, custom_objects=custom_objects(),
                                         compile=False, safe_mode=True)
    except (TypeError, ValueError, OSError) as error:
        raise UserError(f"--init {path}: cannot load as a TTS model "
                        f"({str(error).strip().splitlines()[0]})") from None
    ours, theirs = model.weights, source.weights
    for mine, other in zip(ours, theirs):
        if tuple(mine.shape) != tuple(other.shape):
            raise UserError(
                f"--init {path}: weight {other.path} has shape {tuple(other.shape)}, this "
                f"model's {mine.path} {tuple(mine.shape)}: train with the same model sizes "
                "(preset and model.* settings) as that run")
    if len(ours) != len(theirs):
        raise UserError(f"--init {path}: {len(theirs)} weights, this model has {len(ours)}: "
                        "train with the same model sizes as that run")
    model.set_weights(source.get_weights())


@keras.saving.register_keras_serializable(package="tts")
def guided_attention_loss(guide, alignment):
    """Attention mass far from the diagonal, weighted by `guide` (zero
    outside the valid steps and symbols); summed over symbols, averaged over
    steps."""
    return ops.mean(ops.sum(guide * alignment, axis=-1), axis=-1)


def compile_args(cfg, info=None):
    return {
        "loss": {"mel": "mae", "mel_postnet": "mae",
                 "stop": keras.losses.BinaryCrossentropy(from_logits=True),
                 "alignment": guided_attention_loss},
        "loss_weights": {"mel": 1.0, "mel_postnet": 1.0, "stop": 1.0,
                         "alignment": cfg.model.guided_attention_weight},
    }


# --- the LiteRT parts -------------------------------------------------------------------

STATE_NAMES = ("attention_h", "attention_c", "decoder_h", "decoder_c", "context",
               "weights", "cumulative")
STEP_OUTPUTS = ("frames", "stop") + STATE_NAMES


def _encode_model(model, cfg):
    m = cfg.model
    text = keras.Input((m.max_text_length,), batch_size=1, dtype="int32", name="text")
    features = _encoder_features(text, cfg, model)
    trained = model.get_layer("encoder_lstm")
    unrolled = EncoderLSTM(trained.units, unroll=True, name="encoder_lstm_unrolled")
    memory = unrolled([features, text])
    unrolled.set_weights(trained.get_weights())
    decoder = model.get_layer("decoder")
    processed = decoder.memory_layer(memory)
    mask = layers.Activation("linear", name="mask")(
        ops.cast(ops.not_equal(text, 0), "float32"))
    return keras.Model({"text": text}, [memory, processed, mask], name="encode")


class _DecoderStep(layers.Layer):
    """One decoder step of a trained `TacotronDecoder` (edge models only)."""

    def __init__(self, decoder, **kwargs):
        super().__init__(**kwargs)
        self.decoder = decoder

    def call(self, inputs):
        d = self.decoder
        prenet_output = d.prenet(inputs["frame"], inputs["noise_1"], inputs["noise_2"])
        states = tuple(inputs[name] for name in STATE_NAMES)
        projection_input, states = d.attend(prenet_output, states, inputs["memory"],
                                            inputs["processed_memory"], inputs["mask"])
        return [d.frame_projection(projection_input), d.stop_projection(projection_input)] \
            + list(states)


def _decode_step_model(model, cfg):
    m, n_mels = cfg.model, cfg.audio.n_mels
    decoder = model.get_layer("decoder")
    memory_dim = 2 * m.encoder_lstm_units
    sizes = {"frame": (n_mels,), "noise_1": (m.prenet_units,), "noise_2": (m.prenet_units,),
             "attention_h": (m.attention_rnn_units,), "attention_c": (m.attention_rnn_units,),
             "decoder_h": (m.decoder_rnn_units,), "decoder_c": (m.decoder_rnn_units,),
             "context": (memory_dim,), "weights": (m.max_text_length,),
             "cumulative": (m.max_text_length,),
             "memory": (m.max_text_length, memory_dim),
             "processed_memory": (m.max_text_length, m.attention_dim),
             "mask": (m.max_text_length,)}
    inputs = {name: keras.Input(shape, batch_size=1, name=name) for name, shape in sizes.items()}
    outputs = _DecoderStep(decoder, name="decoder_step")(inputs)
    return keras.Model(inputs, outputs, name="decode_step")


def _postnet_model(model, cfg):
    frames = cfg.model.max_decoder_steps * cfg.model.reduction
    mel = keras.Input((frames, cfg.audio.n_mels), batch_size=1, name="mel")
    return keras.Model({"mel": mel}, layers.Add()([mel, _postnet(mel, cfg, model)]),
                       name="postnet")


def edge_model(model, cfg):
    """{"encode", "decode_step", "postnet"}: batch-1, fixed-shape Functional
    models built from the trained layers of `model` (found by name)."""
    return {"encode": _encode_model(model, cfg),
            "decode_step": _decode_step_model(model, cfg),
            "postnet": _postnet_model(model, cfg)}


def decoder_sizes(cfg):
    m = cfg.model
    return {"prenet_units": m.prenet_units, "prenet_dropout": m.prenet_dropout}


def state_sizes(cfg):
    m = cfg.model
    memory_dim = 2 * m.encoder_lstm_units
    return {"attention_h": m.attention_rnn_units, "attention_c": m.attention_rnn_units,
            "decoder_h": m.decoder_rnn_units, "decoder_c": m.decoder_rnn_units,
            "context": memory_dim, "weights": m.max_text_length,
            "cumulative": m.max_text_length}


def zero_states(cfg):
    return {name: np.zeros((1, size), np.float32) for name, size in state_sizes(cfg).items()}
