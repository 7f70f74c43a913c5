import numpy as np
import pytest

from common.errors import UserError
from tasks.tts import audio, text
from tasks.tts.config import AudioOptions


def _chirp(seconds=0.6, rate=16000):
    """A harmonic tone sweeping 200 -> 600 Hz, loud in the middle."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (200 * t + 200 * t ** 2 / seconds)
    envelope = np.sin(np.pi * t / seconds)
    return (0.5 * envelope * (np.sin(phase) + 0.5 * np.sin(2 * phase))).astype(np.float32)


def test_log_mel_shape_floor_and_frame_count():
    settings = AudioOptions()
    wave = _chirp()
    mel = audio.log_mel(wave, settings).numpy()
    assert mel.shape == (audio.num_frames(len(wave), settings), settings.n_mels)
    assert mel.min() >= audio.SILENCE - 1e-6
    silent = audio.log_mel(np.zeros(4000, np.float32), settings).numpy()
    assert np.allclose(silent, audio.SILENCE)
    # a 200-600 Hz tone puts its energy in the low mel bands
    assert mel[:, :20].mean() > mel[:, 60:].mean() + 1.0


def test_griffin_lim_round_trip_recovers_the_log_mel():
    settings = AudioOptions()
    mel = audio.log_mel(_chirp(), settings).numpy()
    wave = audio.griffin_lim(mel, settings, iterations=60, power=1.0, normalize=False)
    again = audio.log_mel(wave, settings).numpy()
    length = min(len(mel), len(again))
    error = np.abs(mel[:length] - again[:length]).mean()
    trivial = np.abs(mel - mel.mean()).mean()
    assert error < 0.25 * trivial, (error, trivial)
    # same length as the features describe, and not silent
    assert abs(len(wave) - (len(mel) - 1) * settings.hop_length) <= settings.hop_length
    assert np.abs(wave).max() > 0.05


def test_wav_write_read_and_resample(tmp_path):
    wave = _chirp(rate=22050)
    path = tmp_path / "tone.wav"
    audio.write_wav(str(path), wave, 22050)
    read, rate = audio.read_wav(str(path))
    assert rate == 22050 and np.abs(read - wave).max() < 1e-3
    resampled = audio.resample(read, 22050, 16000)
    assert abs(len(resampled) - len(read) * 16000 / 22050) <= 1
    # the tone's bands (below ~1.5 kHz) match a tone made at 16 kHz; above
    # them only the resampler's faint residue differs from the -5 floor
    settings = AudioOptions()
    direct = audio.log_mel(_chirp(rate=16000), settings).numpy()[:, :25]
    converted = audio.log_mel(resampled, settings).numpy()[:, :25]
    length = min(len(direct), len(converted))
    assert np.abs(direct[:length] - converted[:length]).mean() < 0.2


def test_text_normalisation_and_bad_text():
    assert text.decode(text.encode("Héllo, World 42!")) == "hello, world four two!"
    with pytest.warns(UserWarning, match="dropped characters"):
        ids = text.encode("price: 5€ #1")
    assert text.decode(ids) == "price: five one"
    assert ids[-1] == text.SYMBOL_TO_ID[text.END]
    with pytest.raises(UserError, match="nothing to speak"):
        text.encode("  ")
    with pytest.raises(UserError, match="nothing to speak"):
        text.encode("#€%", warn=False)


def test_long_text_is_cut_at_sentence_ends_or_refused():
    assert text.split_for_model("One two three. Four five six. Seven.", 20) == \
        ["one two three.", "four five six.", "seven."]
    assert text.split_for_model("One. Two.", 20) == ["one. two."]
    with pytest.raises(text.TextTooLongError, match="at most 19"):
        text.split_for_model("a" * 30 + ". Short.", 20)


def test_serving_graph_reads_text_as_the_host_does():
    import tensorflow as tf

    from tasks.tts import serving

    texts = ["Café déjà vu, 42 times!", "  Hello   world .", "naïve \u201cquote\u201d it\u2019s",
             "Ünïcödé — Straße 7", "emoji \U0001F600 ok", "price: 5€ #1"]
    ids = serving._ids(tf.constant(texts), 48).numpy()
    for row, original in zip(ids, texts):
        expected = text.encode(original, warn=False)
        assert list(row[:len(expected)]) == expected and not row[len(expected):].any()
    # "#" is the other-voice marker of training: text typed by users never has it
    marker = text.SYMBOL_TO_ID[text.OTHER_VOICE]
    assert marker not in ids and marker not in text.encode("price: 5€ #1", warn=False)
