"""Audio features with tf.signal: STFT, 80-band log-mel, and Griffin-Lim.

One set of functions makes the training targets, the evaluation features
and the vocoder's input, so what the model learns is what the vocoder
inverts. Log-mel values are log10 of the mel magnitude floored at 1e-5:
silence is -5 (`SILENCE`), which is also the value mel padding takes.
"""

import functools
import os
import wave

import numpy as np
import tensorflow as tf

from common.errors import DataError

SILENCE = -5.0
_FLOOR = 10.0 ** SILENCE


@functools.lru_cache(maxsize=8)
def _mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax):
    with tf.init_scope():  # eager even when first asked for inside a graph
        return tf.signal.linear_to_mel_weight_matrix(
            n_mels, n_fft // 2 + 1, sample_rate, fmin, fmax).numpy()


def mel_matrix(audio):
    """(n_fft // 2 + 1, n_mels) triangular filters for `audio` settings."""
    return _mel_matrix(audio.sample_rate, audio.n_fft, audio.n_mels,
                       float(audio.fmin), float(audio.fmax))


def stft(waveform, audio):
    """Complex STFT (frames, n_fft // 2 + 1) of a 1-D float waveform; the
    signal is reflect-padded by n_fft // 2 so frame k is centred on sample
    k * hop_length (1 + len // hop frames)."""
    pad = audio.n_fft // 2
    padded = tf.pad(waveform, [[pad, pad]], mode="REFLECT")
    return tf.signal.stft(padded, audio.win_length, audio.hop_length, audio.n_fft,
                          window_fn=tf.signal.hann_window, pad_end=False)


def inverse_stft(spectrum, audio, length=None):
    pad = audio.n_fft // 2
    signal = tf.signal.inverse_stft(
        spectrum, audio.win_length, audio.hop_length, audio.n_fft,
        window_fn=tf.signal.inverse_stft_window_fn(audio.hop_length,
                                                   tf.signal.hann_window))
    signal = signal[pad:]
    return signal if length is None else signal[:length]


def log_mel(waveform, audio):
    """Log10 mel magnitudes (frames, n_mels), float32, of a 1-D waveform in
    [-1, 1] at `audio.sample_rate`."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    if waveform.shape[0] is not None and waveform.shape[0] <= audio.n_fft // 2:
        raise DataError(f"{waveform.shape[0]} samples: too short for features "
                        f"(at least {audio.n_fft // 2 + 1} samples, "
                        f"{(audio.n_fft // 2 + 1) / audio.sample_rate:.3f} s)")
    magnitude = tf.abs(stft(waveform, audio))
    mel = tf.matmul(magnitude, mel_matrix(audio))
    return tf.math.log(tf.maximum(mel, _FLOOR)) / tf.math.log(10.0)


def num_frames(num_samples, audio):
    return 1 + num_samples // audio.hop_length


@functools.lru_cache(maxsize=8)
def _inverse_mel(sample_rate, n_fft, n_mels, fmin, fmax):
    return np.linalg.pinv(_mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax))


def mel_to_linear(log_mel_frames, audio):
    """Linear magnitudes (frames, n_fft // 2 + 1) from log-mel frames (the
    pseudo-inverse of the filter bank, clipped at zero)."""
    mel = tf.pow(10.0, tf.convert_to_tensor(log_mel_frames, tf.float32))
    inverse = _inverse_mel(audio.sample_rate, audio.n_fft, audio.n_mels,
                           float(audio.fmin), float(audio.fmax)).astype(np.float32)
    return tf.maximum(tf.matmul(mel, inverse), 0.0)


def griffin_lim(log_mel_frames, audio, iterations=None, seed=0, power=None,
                normalize=True):
    """A waveform (float32 numpy) whose log-mel is close to `log_mel_frames`
    (frames, n_mels): Griffin and Lim's phase retrieval. `power` sharpens
    the magnitudes (default `audio.griffin_lim_power`); `normalize` scales
    the peak to 0.9 (off: the level of the mel frames is kept)."""
    iterations = audio.griffin_lim_iterations if iterations is None else iterations
    power = audio.griffin_lim_power if power is None else power
    frames = np.asarray(log_mel_frames, np.float32)
    if frames.shape[0] == 0:
        return np.zeros([0], np.float32)
    length = max(frames.shape[0] - 1, 1) * audio.hop_length
    # The centred STFT reflects n_fft / 2 samples at each end, which needs a
    # longer signal: very short outputs (a model that stops at once) are
    # padded with silent frames and cut back afterwards.
    shortest = audio.n_fft // audio.hop_length + 2
    if len(frames) < shortest:
        frames = np.concatenate([frames, np.full((shortest - len(frames), frames.shape[1]),
                                                 SILENCE, np.float32)])
    magnitude = tf.pow(mel_to_linear(frames, audio), power)
    padded_length = (frames.shape[0] - 1) * audio.hop_length
    waveform = _griffin_lim(magnitude, tf.constant(iterations), audio.win_length,
                            audio.hop_length, audio.n_fft, padded_length, seed)
    waveform = waveform.numpy()[:length]
    peak = np.abs(waveform).max()
    if normalize and peak > 0:
        waveform = waveform / peak * 0.9
    return waveform.astype(np.float32)


@functools.partial(tf.function, reduce_retracing=True, autograph=False)
def _griffin_lim_graph(magnitude, iterations, win_length, hop_length, n_fft, length, phase):
    settings = _Settings(win_length, hop_length, n_fft)
    magnitude = tf.cast(magnitude, tf.complex64)
    spectrum = magnitude * phase

    def body(index, spectrum):
        signal = inverse_stft(spectrum, settings, length)
        rebuilt = stft(signal, settings)
        rebuilt = rebuilt[:tf.shape(magnitude)[0]]
        angle = rebuilt / tf.cast(tf.maximum(tf.abs(rebuilt), 1e-8), tf.complex64)
        return index + 1, magnitude * angle

    _, spectrum = tf.while_loop(lambda index, _: index < iterations, body,
                                (tf.constant(0), spectrum))
    return inverse_stft(spectrum, settings, length)


class _Settings:
    def __init__(self, win_length, hop_length, n_fft):
        self.win_length, self.hop_length, self.n_fft = win_length, hop_length, n_fft


def _griffin_lim(magnitude, iterations, win_length, hop_length, n_fft, length, seed):
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, magnitude.shape).astype(np.float32)
    phase = tf.complex(np.cos(angles), np.sin(angles))
    return _griffin_lim_graph(magnitude, iterations, win_length, hop_length, n_fft,
                              length, phase)


# --- WAV files ---------------------------------------------------------------

def read_wav(path):
    """(float32 mono waveform in [-1, 1], sample rate) of a PCM WAV file.

    Missing, unreadable, empty or non-PCM files raise DataError naming the file.
    """
    from scipy.io import wavfile

    if not os.path.exists(path):
        raise DataError(f"{path}: WAV file not found")
    try:
        with open(path, "rb") as handle:
            rate, data = wavfile.read(handle)
    except (ValueError, OSError, EOFError, wave.Error) as error:
        raise DataError(f"{path}: unreadable WAV ({error})") from None
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0:
        raise DataError(f"{path}: WAV holds no samples")
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        data = data.astype(np.float32) / 2147483648.0
    elif data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    else:
        data = data.astype(np.float32)
    return data, int(rate)


def resample(waveform, source_rate, target_rate):
    """Polyphase resampling (scipy), exact for any pair of integer rates."""
    if source_rate == target_rate:
        return waveform.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(source_rate, target_rate)
    return resample_poly(waveform, target_rate // divisor,
                         source_rate // divisor).astype(np.float32)


def wav_bytes(waveform, sample_rate):
    """16-bit PCM WAV file contents of a float waveform."""
    import io

    from scipy.io import wavfile

    buffer = io.BytesIO()
    pcm = np.clip(np.asarray(waveform) * 32767.0, -32768, 32767).astype(np.int16)
    wavfile.write(buffer, int(sample_rate), pcm)
    return buffer.getvalue()


def write_wav(path, waveform, sample_rate):
    from common import files

    files.write_bytes_atomic(path, wav_bytes(waveform, sample_rate))
