"""Token ids <-> text for translation: one definition for the host (numpy)
and for the SavedModel graph (core TF ops), so every artifact detokenizes the
same way.

Sentences are `[CLS] pieces [SEP]` (common/wordpiece.py): the source as is;
the target shifted by one for teacher forcing (decoder input `[CLS] pieces`,
labels `pieces [SEP]`), so [CLS] is the start token and [SEP] the end token.
"""

import re

import numpy as np
import tensorflow as tf

from common.wordpiece import CLS, PAD, SEP, SUFFIX, WordPieceTokenizer

# The WordPiece pre-tokenizer puts spaces around punctuation; these undo the
# common cases so the text reads naturally (BLEU's own tokenizer splits
# punctuation again, so scores do not depend on this).
NO_SPACE_BEFORE = r" ([.,!?;:%)\]}])"
NO_SPACE_AFTER = r"([¿¡(\[{]) "


def tokenizers(info, cfg):
    """(source tokenizer, target tokenizer). The target one is one token
    longer: its ids give the decoder input (all but the last) and the labels
    (all but the first)."""
    source = WordPieceTokenizer(info["source_vocabulary"], cfg.model.max_source_length,
                                lowercase=info["lowercase"])
    target = WordPieceTokenizer(info["target_vocabulary"], cfg.model.max_target_length + 1,
                                lowercase=info["lowercase"])
    return source, target


def join_pieces(pieces):
    """WordPiece pieces (no special tokens) -> text."""
    text = " ".join(pieces).replace(" " + SUFFIX, "")
    text = re.sub(NO_SPACE_BEFORE, r"\1", text)
    return re.sub(NO_SPACE_AFTER, r"\1", text)


def ids_to_text(ids, vocabulary):
    """One row of ids -> text: stops at [SEP], drops [CLS] / [PAD]."""
    pieces = []
    for index in np.asarray(ids).tolist():
        piece = vocabulary[int(index)]
        if piece == SEP:
            break
        if piece in (CLS, PAD):
            continue
        pieces.append(piece)
    return join_pieces(pieces)


def ids_to_text_graph(ids, vocabulary, special_ids):
    """[batch, length] int32 ids -> [batch] strings, in core TF ops only.

    Rows must already hold [PAD] after their [SEP] (the decoders write it);
    every special token is dropped.
    """
    pieces = tf.gather(tf.constant(vocabulary), ids)
    keep = tf.reduce_all(tf.stack([tf.not_equal(ids, i) for i in special_ids]), axis=0)
    kept = tf.ragged.boolean_mask(pieces, keep)
    text = tf.strings.reduce_join(kept, axis=1, separator=" ")
    text = tf.strings.regex_replace(text, " " + SUFFIX, "")
    text = tf.strings.regex_replace(text, NO_SPACE_BEFORE, r"\1")
    return tf.strings.regex_replace(text, NO_SPACE_AFTER, r"\1")
