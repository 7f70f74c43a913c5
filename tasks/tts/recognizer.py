"""Intelligibility: an offline speech recognizer (pocketsphinx, CMU's US
English acoustic model and dictionary shipped in its wheel) with a
language model built from the sentences it is asked to recognize.

The language model is an ARPA back-off bigram over the test sentences
(pocketsphinx's own `ArpaBoLM`), so the recognizer picks among plausible
word sequences; the same recognizer and language model score the reference
audio and ground-truth mels through the vocoder, which puts the model's
figure in context.
"""

import functools
import os
import tempfile

import numpy as np

from common.errors import UserError
from tasks.tts import audio as audio_lib
from tasks.tts import text as text_lib

RECOGNIZER_RATE = 16000


def _pocketsphinx():
    try:
        import pocketsphinx
    except ImportError:
        raise UserError("the intelligibility metric needs pocketsphinx; install it with "
                        "`pip install pocketsphinx`") from None
    return pocketsphinx


@functools.lru_cache(maxsize=4)
def _decoder(sentences):
    pocketsphinx = _pocketsphinx()
    from pocketsphinx.lm import ArpaBoLM

    text = "\n".join(" ".join(text_lib.words(sentence)) for sentence in sentences)
    model = ArpaBoLM(text=text, add_start=True)
    model.compute()
    folder = tempfile.mkdtemp(prefix="tts-lm-")
    path = os.path.join(folder, "test.arpa")
    if not model.write_file(path):  # it reports failure by its return value only
        raise RuntimeError(f"could not write the recognizer's language model to {path}")
    return pocketsphinx.Decoder(samprate=RECOGNIZER_RATE, lm=path, loglevel="FATAL")


def transcribe(waveform, sample_rate, sentences):
    """The words pocketsphinx hears in `waveform`, with a language model of
    `sentences` (a tuple)."""
    decoder = _decoder(tuple(sentences))
    samples = audio_lib.resample(np.asarray(waveform, np.float32), sample_rate,
                                 RECOGNIZER_RATE)
    peak = np.abs(samples).max() if samples.size else 0.0
    if peak > 0:
        samples = samples / peak * 0.9
    pcm = (samples * 32767).astype(np.int16)
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), False, True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


def word_errors(reference, hypothesis):
    """(edit distance in words, reference word count)."""
    import jiwer

    reference_words = text_lib.words(reference)
    hypothesis_words = text_lib.words(hypothesis)
    if not reference_words:
        return 0, 0
    if not hypothesis_words:
        return len(reference_words), len(reference_words)
    output = jiwer.process_words(" ".join(reference_words), " ".join(hypothesis_words))
    return output.substitutions + output.deletions + output.insertions, len(reference_words)
