"""Sample translations for the run report: source, reference, float, INT8.

Written as a markdown table (`translation_samples.md`) beside report.md.
"""

import os

from common import files
from tasks.translation.metrics import translations


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def save_samples(predict_fn, splits, info, out_dir, int8_predict_fn=None, count=12):
    first = splits.test.unbatch().take(count).batch(count)
    sources, references, float_outputs = translations(predict_fn, first, info)
    int8_outputs = (translations(int8_predict_fn, first, info)[2]
                    if int8_predict_fn is not None else ["(no INT8 model)"] * len(sources))
    lines = ["# Sample translations (test split)", "",
             "| source | reference | float | INT8 |", "|---|---|---|---|"]
    for row in zip(sources, references, float_outputs, int8_outputs):
        lines.append("| " + " | ".join(_cell(text) for text in row) + " |")
    path = os.path.join(out_dir, "translation_samples.md")
    files.write_text_atomic(path, "\n".join(lines) + "\n")
    return [path]
