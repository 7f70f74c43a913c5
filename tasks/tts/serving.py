"""The TF Serving signature: text in, waveform and sample rate out.

Everything runs in the graph: characters to symbol ids, normalized as on
the host (digits read out, accents removed, characters outside the symbol
set dropped; `normalized_text`), the
encoder, the decoder loop (`tf.while_loop`, stopping when every text has
emitted its stop token or at `model.max_decoder_steps`), the post-net, and
Griffin-Lim with tf.signal.
"""

import unicodedata

import numpy as np
import tensorflow as tf

from common import serving
from tasks.tts import audio as audio_lib
from tasks.tts import text as text_lib
from tasks.tts.audio import SILENCE


def _folding_table(size=0x2020):
    """Code point -> the code point the host's `text.normalize` turns it
    into (accents removed, lower case, curly quotes straight), -1 for
    characters outside the symbol set (dropped); up to the quotes U+2019."""
    table = np.full(size, -1, np.int32)
    for code in range(size):
        folded = unicodedata.normalize("NFKD", chr(code))
        folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
        folded = {"\u2019": "'", "\u2018": "'"}.get(folded, folded)
        if folded.isspace():
            table[code] = ord(" ")
        elif len(folded) == 1 and folded in text_lib.SYMBOL_TO_ID \
                and folded not in text_lib.CONTROL:
            table[code] = ord(folded)
    return table


def normalized_text(strings):
    """`text.normalize` in the graph: digits read out, accents removed,
    lower case, characters outside the symbol set dropped, spaces collapsed
    and none before punctuation."""
    for digit, word in enumerate(text_lib.DIGIT_WORDS):
        strings = tf.strings.regex_replace(strings, str(digit), f" {word} ")
    table = tf.constant(_folding_table())
    codes = tf.strings.unicode_decode(strings, "UTF-8", errors="replace")
    codes = tf.ragged.map_flat_values(
        lambda c: tf.where(c < tf.size(table), tf.gather(table, tf.minimum(c, tf.size(table) - 1)),
                           -1), codes)
    codes = tf.ragged.boolean_mask(codes, codes >= 0)
    strings = tf.strings.unicode_encode(codes, "UTF-8")
    strings = tf.strings.regex_replace(strings, r"\s+", " ")
    strings = tf.strings.regex_replace(strings, r" ([.,?!;:])", r"\1")
    return tf.strings.strip(strings)


def _ids(strings, max_length):
    """Symbol ids (N, max_length) of a batch of strings, normalized as on the
    host, looked up in a constant table (no lookup-table resource to
    track), the end symbol appended, padded with 0."""
    table = np.full(128, -1, np.int32)
    for symbol, index in text_lib.SYMBOL_TO_ID.items():
        if symbol not in text_lib.CONTROL:
            table[ord(symbol)] = index
    codes = tf.strings.unicode_decode(normalized_text(strings), "UTF-8")
    ids = tf.ragged.map_flat_values(lambda c: tf.gather(tf.constant(table), c), codes)
    ids = ids[:, :max_length - 1]
    end = tf.fill([tf.shape(strings)[0], 1], text_lib.SYMBOL_TO_ID[text_lib.END])
    ids = tf.concat([ids, tf.RaggedTensor.from_tensor(end)], axis=1)
    return ids.to_tensor(default_value=0, shape=[None, max_length])


def _griffin_lim(log_mel, audio, iterations):
    magnitude = tf.pow(audio_lib.mel_to_linear(log_mel, audio), audio.griffin_lim_power)
    angles = tf.random.uniform(tf.shape(magnitude), 0.0, 2.0 * np.pi, seed=0)
    spectrum = tf.cast(magnitude, tf.complex64) * tf.complex(tf.cos(angles), tf.sin(angles))
    length = (tf.shape(log_mel)[0] - 1) * audio.hop_length
    for _ in range(iterations):
        signal = audio_lib.inverse_stft(spectrum, audio, length)
        rebuilt = audio_lib.stft(signal, audio)[:tf.shape(magnitude)[0]]
        spectrum = tf.cast(magnitude, tf.complex64) * (
            rebuilt / tf.cast(tf.maximum(tf.abs(rebuilt), 1e-8), tf.complex64))
    signal = audio_lib.inverse_stft(spectrum, audio, length)
    return signal / tf.maximum(tf.reduce_max(tf.abs(signal)), 1e-6) * 0.9


def build_serving_model(model, cfg, info=None):
    m, audio = cfg.model, cfg.audio
    decoder = model.get_layer("decoder")
    encoder_lstm = model.get_layer("encoder_lstm")
    conv_layers = [(model.get_layer(f"encoder_conv_{i}"), model.get_layer(f"encoder_bn_{i}"))
                   for i in range(m.encoder_convolutions)]
    post_layers = [(model.get_layer(f"postnet_conv_{i}"), model.get_layer(f"postnet_bn_{i}"))
                   for i in range(m.postnet_layers)]
    embedding = model.get_layer("embedding")
    r, n_mels, max_steps = m.reduction, audio.n_mels, m.max_decoder_steps

    def synthesize(text):
        text = serving.check_shape(text, ("batch",), "text")
        text = serving.check_batch(text, cfg.export.serving_max_batch)
        text = serving.check_text(text, cfg.export.serving_max_text_bytes)
        ids = _ids(text, m.max_text_length)
        x = embedding(ids)
        for conv, norm in conv_layers:
            x = tf.nn.relu(norm(conv(x), training=False))
        memory = encoder_lstm([x, ids])
        mask = tf.cast(ids > 0, tf.float32)
        processed = decoder.memory_layer(memory)
        batch = tf.shape(ids)[0]
        states = decoder.initial_states(memory)
        frame = tf.fill([batch, n_mels], SILENCE)
        frames = tf.TensorArray(tf.float32, size=max_steps)
        lengths = tf.fill([batch], max_steps)

        def body(step, frame, states, frames, lengths):
            prenet_output = decoder.prenet(frame)
            projection, states = decoder.attend(prenet_output, states, memory, processed, mask)
            step_frames = decoder.frame_projection(projection)
            stop = tf.sigmoid(decoder.stop_projection(projection)[:, 0]) > m.stop_threshold
            lengths = tf.where(stop & (lengths == max_steps), step + 1, lengths)
            frames = frames.write(step, step_frames)
            return step + 1, step_frames[:, -n_mels:], states, frames, lengths

        def running(step, frame, states, frames, lengths):
            return tf.logical_and(step < max_steps, tf.reduce_any(lengths == max_steps))

        steps, _, _, frames, lengths = tf.while_loop(
            running, body, (tf.constant(0), frame, states, frames, lengths),
            maximum_iterations=max_steps)
        mel = tf.reshape(tf.transpose(frames.stack()[:steps], (1, 0, 2)),
                         [batch, steps * r, n_mels])
        residual = mel
        for index, (conv, norm) in enumerate(post_layers):
            residual = norm(conv(residual), training=False)
            if index < len(post_layers) - 1:
                residual = tf.tanh(residual)
        mel = mel + residual
        frame_lengths = tf.minimum(lengths, steps) * r

        # The centred STFT reflects n_fft / 2 samples at each end: a very
        # short output (a model that stops at once) gets silent frames first,
        # as audio.griffin_lim does on the host.
        shortest = audio.n_fft // audio.hop_length + 2
        total = steps * r * audio.hop_length

        def vocode(args):
            log_mel, frame_length = args
            frames = log_mel[:frame_length]
            missing = tf.maximum(shortest - tf.shape(frames)[0], 0)
            frames = tf.concat(
                [frames, tf.fill([missing, tf.shape(frames)[1]], audio_lib.SILENCE)], axis=0)
            signal = _griffin_lim(frames, audio, audio.griffin_lim_iterations)[:total]
            return tf.pad(signal, [[0, total - tf.shape(signal)[0]]])

        waveform = tf.map_fn(vocode, (mel, frame_lengths), fn_output_signature=tf.TensorSpec(
            [None], tf.float32))
        return {"waveform": waveform,
                "length": (frame_lengths - 1) * audio.hop_length,
                "sample_rate": tf.fill([batch], audio.sample_rate)}

    return {"serving_default": (synthesize, [serving.request_spec(tf.string, "text")])}
