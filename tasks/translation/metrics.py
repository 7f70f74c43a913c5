"""Translation metrics with sacrebleu: BLEU, chrF, exact match, per-length BLEU.

`score(predict_fn, dataset, info)` scores every artifact and baseline alike:
`predict_fn(inputs) -> [translation strings]` for a batch of
`({"source_ids", "decoder_ids"}, labels)`. The references are the labels
detokenized (see tasks/translation/text.py), so hypothesis and reference
are compared as the same kind of text; BLEU uses sacrebleu's standard 13a
tokenization, chrF its defaults (character 6-grams, beta 2).
"""

import numpy as np
import sacrebleu

from tasks.translation import text as text_lib

PRIMARY_METRIC = "bleu"
# Reference length buckets (words) for the per-length BLEU in the report.
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, None))


def bucket_name(low, high):
    return f"bleu_words_{low}_{high}" if high else f"bleu_words_{low}_plus"


def corpus_scores(hypotheses, references):
    """BLEU, chrF and exact match of aligned lists of strings, plus BLEU per
    reference-length bucket (absent buckets are left out)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")
    result = {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, [references]).score),
        "exact_match": float(np.mean([h == r for h, r in zip(hypotheses, references)])),
        "sentences": len(references),
    }
    lengths = np.array([len(r.split()) for r in references])
    for low, high in LENGTH_BUCKETS:
        chosen = np.flatnonzero((lengths >= low) & ((lengths <= high) if high else True))
        if len(chosen):
            result[bucket_name(low, high)] = float(sacrebleu.corpus_bleu(
                [hypotheses[i] for i in chosen], [[references[i] for i in chosen]]).score)
    return result


def translations(predict_fn, dataset, info):
    """(sources, references, hypotheses) over `dataset`, as text."""
    sources, references, hypotheses = [], [], []
    for inputs, labels in dataset:
        source_ids = np.asarray(inputs["source_ids"])
        hypotheses.extend(predict_fn({"source_ids": source_ids}))
        sources.extend(text_lib.ids_to_text(row, info["source_vocabulary"])
                       for row in source_ids)
        references.extend(text_lib.ids_to_text(row, info["target_vocabulary"])
                          for row in np.asarray(labels))
    return sources, references, hypotheses


def score(predict_fn, dataset, info):
    _, references, hypotheses = translations(predict_fn, dataset, info)
    return corpus_scores(hypotheses, references)


def baseline_predict_fns(splits, info):
    """Copy the source sentence: the usual floor for translation (names,
    numbers and punctuation survive it)."""
    vocabulary = info["source_vocabulary"]

    def copy_source(inputs):
        return [text_lib.ids_to_text(row, vocabulary)
                for row in np.asarray(inputs["source_ids"])]
    return {"copy_source": copy_source}
