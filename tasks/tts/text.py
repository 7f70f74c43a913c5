"""Characters to symbol ids and back, with the bad-input rules of the task.

The model reads characters (no phonemizer at inference, so the LiteRT path
needs nothing but this table). Text is lower-cased and accents are removed
(NFKD); any other character outside the symbol set is dropped with a
warning naming it. Digits are read out one by one ("42" -> "four two"),
which is crude but keeps every input speakable.
"""

import re
import unicodedata
import warnings

from common.errors import UserError

PAD = "_"   # id 0: padding
END = "~"   # id 1: end of text, appended to every input
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCTUATION = " '.,?!-;:"
# Prepended to the built-in corpus's sentences when they are trained beside a
# folder's own voice (data.builtin_voice_share): "spoken by the other voice".
# Text never contains it, so the model speaks in the folder's voice.
OTHER_VOICE = "#"
SYMBOLS = [PAD, END] + list(LETTERS) + list(PUNCTUATION) + [OTHER_VOICE]
# Symbols that only the code writes: dropped from users' text.
CONTROL = (PAD, END, OTHER_VOICE)
SYMBOL_TO_ID = {symbol: index for index, symbol in enumerate(SYMBOLS)}
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven",
               "eight", "nine"]
# Sentence ends, where a long text may be cut into chunks.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


class TextTooLongError(UserError):
    """A text (or one of its sentences) longer than the model accepts."""


def normalize(text, warn=True):
    """Lower-case, accents removed, digits spelled out, whitespace collapsed,
    unknown characters dropped (with one warning listing them)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", "")
    text = re.sub(r"\s+", " ", text)
    unknown = sorted({ch for ch in text if ch not in SYMBOL_TO_ID or ch in CONTROL})
    if unknown:
        if warn:
            warnings.warn(f"text {text[:40]!r}: dropped characters outside the symbol "
                          f"set: {''.join(unknown)!r}", stacklevel=2)
        text = "".join(ch for ch in text if ch not in unknown)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([.,?!;:])", r"\1", text).strip()


def encode(text, warn=True):
    """Symbol ids of `text` (normalized) followed by the end symbol.

    An empty text, or one with nothing speakable left, is a UserError.
    """
    cleaned = normalize(text, warn=warn)
    if not cleaned:
        raise UserError(f"text {text!r}: nothing to speak (empty, or no character "
                        "in the symbol set)")
    return [SYMBOL_TO_ID[ch] for ch in cleaned] + [SYMBOL_TO_ID[END]]


def decode(ids):
    """The text of `ids` (padding, the end symbol and the voice marker removed)."""
    return "".join(SYMBOLS[int(i)] for i in ids if SYMBOLS[int(i)] not in CONTROL)


def words(text):
    """Lower-case words without punctuation, as the recognizer writes them."""
    return re.findall(r"[a-z']+", normalize(text, warn=False))


def split_for_model(text, max_length):
    """`text` cut at sentence ends into pieces of at most `max_length` ids.

    A sentence that alone is too long cannot be spoken by the model (its
    attention and decoder-step budget are fixed): a TextTooLongError names
    it and the limit.
    """
    cleaned = normalize(text)
    if not cleaned:
        raise UserError(f"text {text!r}: nothing to speak (empty, or no character "
                        "in the symbol set)")
    chunks, current = [], ""
    for sentence in _SENTENCE_END.split(cleaned):
        if len(sentence) + 1 > max_length:
            raise TextTooLongError(
                f"sentence {sentence[:50]!r}... has {len(sentence)} characters; this "
                f"model speaks at most {max_length - 1} per sentence "
                "(model.max_text_length); split it into shorter sentences")
        joined = f"{current} {sentence}".strip()
        if len(joined) + 1 <= max_length:
            current = joined
        else:
            chunks.append(current)
            current = sentence
    chunks.append(current)
    return chunks
