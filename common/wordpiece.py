"""A BERT WordPiece tokenizer written in core TensorFlow ops only.

Stock TF Serving does not ship the tensorflow-text ops (WordpieceTokenizeWith-
Offsets, RegexSplitWithOffsets, ...), so keras-hub's `BertTokenizer` cannot go
inside the served SavedModel. This tokenizer does the same job with
`tf.strings` regexes, a `tf.lookup.StaticHashTable` and a `tf.while_loop`;
training, serving and the LiteRT host runner all call it, so every path
tokenises identically.

What it does, in BERT's order:
1. invalid UTF-8 bytes become U+FFFD (never an error at serving time);
2. lowercase (when the vocabulary is uncased);
3. whitespace and control characters become spaces; punctuation and CJK
   characters become words of their own;
4. each word is split greedily into the longest vocabulary pieces, the
   continuation pieces spelled `##piece`; a word that cannot be split, or
   longer than `max_chars_per_word`, becomes `[UNK]` (as in BERT);
5. `[CLS] pieces [SEP]`, truncated to `sequence_length` (long texts lose their
   end) and padded with `[PAD]` (id 0 in every BERT vocabulary).

Not done (documented difference from BERT's tokenizer): accents are not
stripped, because Unicode normalisation is not a core TF op.
"""

import json

import numpy as np
import tensorflow as tf

from common import files
from common.errors import DataError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]
SUFFIX = "##"

# The regexes of keras-hub's WordPiece pre-tokenizer (BERT's definition of
# punctuation: every non-alphanumeric ASCII character plus Unicode class P).
PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|[\p{P}]"
CJK = (r"[\x{4E00}-\x{9FFF}]|[\x{3400}-\x{4DBF}]|[\x{20000}-\x{2A6DF}]|"
       r"[\x{2A700}-\x{2B73F}]|[\x{2B740}-\x{2B81F}]|[\x{2B820}-\x{2CEAF}]|"
       r"[\x{F900}-\x{FAFF}]|[\x{2F800}-\x{2FA1F}]")
WHITESPACE_OR_CONTROL = r"[\s\p{Cc}\p{Cf}]+"


def normalize_and_split(texts, lowercase=True):
    """Strings [batch] -> words, a RaggedTensor [batch, (words)]."""
    texts = tf.strings.unicode_transcode(
        texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, f"({PUNCTUATION}|{CJK})", r" \1 ")
    texts = tf.strings.regex_replace(texts, WHITESPACE_OR_CONTROL, " ")
    return tf.strings.split(texts)


def read_vocabulary(path):
    """One token per line, as keras-hub and BERT checkpoints store it, or the
    "vocabulary" list of a run's info.json."""
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                vocabulary = json.load(handle).get("vocabulary")
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except (ValueError, AttributeError) as error:
            raise DataError(f"{path}: not a run's info.json ({error})") from None
        if not isinstance(vocabulary, list):
            raise DataError(f"{path}: has no \"vocabulary\" list")
        check_vocabulary(vocabulary, path)
        return vocabulary
    try:
        with open(path, encoding="utf-8") as handle:
            vocabulary = [line.rstrip("\n") for line in handle]
    except FileNotFoundError:
        raise DataError(f"{path}: vocabulary file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: vocabulary is not UTF-8 ({error})") from None
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    check_vocabulary(vocabulary, path)
    return vocabulary


def write_vocabulary(vocabulary, path):
    files.write_text_atomic(path, "\n".join(vocabulary) + "\n")


def check_vocabulary(vocabulary, source):
    missing = [token for token in SPECIAL_TOKENS if token not in vocabulary]
    if missing:
        raise DataError(
            f"{source}: vocabulary lacks the special tokens {missing} "
            f"(a BERT WordPiece vocabulary has {', '.join(SPECIAL_TOKENS)})")
    if vocabulary[0] != PAD:
        raise DataError(
            f"{source}: the first vocabulary entry must be {PAD} (id 0 is "
            f"padding), got {vocabulary[0]!r}")
    if len(set(vocabulary)) != len(vocabulary):
        raise DataError(f"{source}: vocabulary has duplicate entries")


def is_uncased(vocabulary):
    """A vocabulary without upper-case word pieces expects lowercased input."""
    return not any(
        token not in SPECIAL_TOKENS and token != token.lower()
        for token in vocabulary)


class WordPieceTokenizer(tf.Module):
    """Strings [batch] -> int32 token ids [batch, sequence_length].

    A `tf.Module`, so a SavedModel that calls it tracks its lookup table.
    """

    def __init__(self, vocabulary, sequence_length, lowercase=None,
                 max_chars_per_word=100, name="word_piece_tokenizer"):
        super().__init__(name=name)
        check_vocabulary(vocabulary, "tokenizer")
        if sequence_length < 3:
            raise DataError(
                f"sequence_length must be at least 3 ([CLS] word [SEP]), "
                f"got {sequence_length}")
        self.vocabulary = list(vocabulary)
        self.sequence_length = int(sequence_length)
        self.lowercase = is_uncased(vocabulary) if lowercase is None else lowercase
        self.max_chars_per_word = int(max_chars_per_word)
        self.pad_id = self.vocabulary.index(PAD)
        self.unk_id = self.vocabulary.index(UNK)
        self.cls_id = self.vocabulary.index(CLS)
        self.sep_id = self.vocabulary.index(SEP)
        self.mask_id = self.vocabulary.index(MASK)
        # The longest piece bounds how far one greedy step looks ahead.
        self.max_piece_chars = max(
            len(token[len(SUFFIX):] if token.startswith(SUFFIX) else token)
            for token in self.vocabulary if token not in SPECIAL_TOKENS)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary),
                tf.range(len(self.vocabulary), dtype=tf.int64)),
            default_value=-1)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def __call__(self, texts):
        return self.tokenize(texts)[0]

    # A graph function: 15x faster than eager on the host (1 ms a sentence).
    @tf.function(reduce_retracing=True)
    def tokenize(self, texts):
        """Strings -> (ids [batch, sequence_length], truncated [batch] bool)."""
        texts = tf.convert_to_tensor(texts, tf.string)
        scalar = texts.shape.rank == 0
        if scalar:
            texts = texts[tf.newaxis]
        words = normalize_and_split(texts, self.lowercase)
        room = self.sequence_length - 2  # [CLS] and [SEP] take two places
        # Every word gives at least one piece, so words past the room can
        # never be kept: drop them before the costly part.
        too_many_words = words.row_lengths() > room
        words = words[:, :room]
        piece_ids = self._word_pieces(words.flat_values)
        pieces = tf.RaggedTensor.from_row_lengths(
            tf.RaggedTensor.from_row_lengths(
                piece_ids.flat_values, piece_ids.row_lengths()),
            words.row_lengths()).merge_dims(1, 2)
        truncated = too_many_words | (pieces.row_lengths() > room)
        pieces = pieces[:, :room]
        batch = tf.shape(texts)[0]
        cls = tf.fill([batch, 1], self.cls_id)
        sep = tf.fill([batch, 1], self.sep_id)
        ids = tf.concat([cls, tf.cast(pieces, tf.int32), sep], axis=1)
        ids = ids.to_tensor(default_value=self.pad_id,
                            shape=[None, self.sequence_length])
        if scalar:
            return ids[0], truncated[0]
        return ids, truncated

    def _word_pieces(self, words):
        """Words [W] -> RaggedTensor [W, (pieces)] of int64 ids, greedily."""
        count = tf.shape(words)[0]
        lengths = tf.strings.length(words, unit="UTF8_CHAR")
        too_long = lengths > self.max_chars_per_word
        # Candidate piece lengths tried at each step, longest first.
        widths = tf.range(self.max_piece_chars, 0, -1)
        num_widths = self.max_piece_chars

        def step(position, failed, emitted):
            active = (position < lengths) & ~failed & ~too_long
            starts = tf.repeat(position[:, None], num_widths, axis=1)
            spans = tf.tile(widths[None, :], [count, 1])
            candidates = tf.strings.substr(
                tf.repeat(words[:, None], num_widths, axis=1),
                starts, spans, unit="UTF8_CHAR")
            prefix = tf.where(starts > 0, SUFFIX, "")
            ids = self.table.lookup(tf.strings.join([prefix, candidates]))
            fits = spans <= (lengths - position)[:, None]
            found = (ids >= 0) & fits
            best = tf.argmax(tf.cast(found, tf.int32), axis=1, output_type=tf.int32)
            hit = tf.reduce_any(found, axis=1)
            piece = tf.gather(ids, best, batch_dims=1)
            width = tf.gather(widths, best)
            emit = tf.where(active & hit, piece, -1)
            failed = failed | (active & ~hit)
            position = tf.where(active & hit, position + width, position)
            return [position, failed, emitted.write(emitted.size(), emit)]

        def not_done(position, failed, emitted):
            return tf.reduce_any((position < lengths) & ~failed & ~too_long)

        position = tf.zeros([count], tf.int32)
        failed = tf.zeros([count], tf.bool)
        emitted = tf.TensorArray(tf.int64, size=0, dynamic_size=True,
                                 element_shape=[None])
        emitted = emitted.write(0, tf.fill([count], tf.constant(-1, tf.int64)))
        _, failed, emitted = tf.while_loop(
            not_done, step, [position, failed, emitted],
            maximum_iterations=self.max_chars_per_word)
        # [W, steps]; column 0 is the placeholder written before the loop.
        steps = tf.transpose(emitted.stack())
        # BERT: a word that cannot be fully split is one [UNK]; the
        # placeholder column carries it.
        unknown = failed | too_long | (lengths == 0)
        placeholder = tf.where(unknown, tf.constant(self.unk_id, tf.int64),
                               steps[:, 0])
        steps = tf.concat(
            [placeholder[:, None],
             tf.where(unknown[:, None], tf.constant(-1, tf.int64), steps[:, 1:])],
            axis=1)
        return tf.ragged.boolean_mask(steps, steps >= 0)

    def decode(self, ids):
        """Token ids -> the list of pieces, padding dropped (for reading)."""
        return [self.vocabulary[i] for i in np.asarray(ids).tolist()
                if i != self.pad_id]


def build_vocabulary(texts, size, lowercase=True):
    """A WordPiece vocabulary learnt from `texts`, special tokens first.

    The words are split by the same core-TF pre-tokenizer that serving uses,
    so the learnt pieces match what the tokenizer will look up.
    """
    from keras_hub.tokenizers import compute_word_piece_vocabulary

    words = tf.data.Dataset.from_tensor_slices(tf.constant(texts)).batch(512).map(
        lambda batch: normalize_and_split(batch, lowercase),
        num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    vocabulary = compute_word_piece_vocabulary(
        words, size, split=False, lowercase=False, strip_accents=False,
        reserved_tokens=SPECIAL_TOKENS)
    return vocabulary
