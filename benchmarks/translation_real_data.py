"""Translation on a small real parallel corpus: the default preset through
`--data PATH` against the copy-the-source baseline, as JSON.

    pip install django   # only for its translation catalogues
    python benchmarks/translation_real_data.py [--language de] [--run DIR]

The corpus: the English -> LANGUAGE user-interface strings of the compiled
gettext catalogues (`.mo`) that ship inside Django, human translations of
menus, messages and field names; single-line, non-plural entries, one pair
per distinct English string (748 for German, 762 for French with Django
5.2). Written as a TSV that `python -m tasks.translation.train --data`
reads. tests/test_translation_real_data.py reads the same corpus with
`django_pairs` and runs a shortened default preset on it.
"""

import argparse
import gettext
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


INSTALL_HINT = ("the English -> LANGUAGE corpus is read from the translation catalogues "
                "that ship inside Django: pip install django (it is in the test extra: "
                "pip install -e '.[test]')")


def django_pairs(language):
    """{English: translation} from every Django catalogue for `language`
    (a locale folder name such as "de" or "pt_BR"), in a fixed order.

    Shared with tests/test_translation_real_data.py. Raises ImportError
    (with the install command) without Django and ValueError for a language
    Django has no catalogue for."""
    try:
        import django
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    root = os.path.dirname(django.__file__)
    pairs = {}
    for path in sorted(glob.glob(f"{root}/**/locale/{language}/LC_MESSAGES/*.mo",
                                 recursive=True)):
        with open(path, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
        for source, target in catalog.items():
            if not isinstance(source, str) or not source or not target:
                continue  # the header entry and plural forms
            text = source + target
            if "\n" in text or "\t" in text or "\x04" in source:  # multi-line, context
                continue
            pairs.setdefault(source.strip(), target.strip())
    if not pairs:
        raise ValueError(f"Django {django.__version__} ships no catalogue for language "
                         f"{language!r} (locale folders under {root})")
    return pairs


def write_tsv(pairs, path):
    """The `source<TAB>target` TSV (with its header row) that `--data` reads."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("source\ttarget\n")
        handle.writelines(f"{source}\t{target}\n" for source, target in pairs.items())


def summarize(report, language, pairs):
    """The benchmark's JSON from a run's report.json: BLEU on the test split
    of every artifact and of the copy-the-source baseline."""
    import django

    metrics = report["metrics"]
    bleu = {name: metrics[name]["bleu"] for name in
            ("float", "tflite_float", "int8", "qat_int8", "ptq_int8") if name in metrics}
    return {"corpus": f"Django {django.__version__} .mo catalogues, en -> {language}",
            "pairs": len(pairs), "data_summary": report["data_summary"],
            "bleu": bleu,
            # model_int8.tflite is the QAT file unless post-training INT8 did
            # better on validation (then the QAT file is metrics.qat_int8).
            "int8_shipped": "post-training" if "qat_int8" in metrics else "qat",
            "baseline": metrics["baseline"], "seconds": report["seconds"],
            "chosen_epochs": report.get("chosen_epochs")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="de",
                        help="a Django locale folder name: de, fr, es, nl, pt_BR, ...")
    parser.add_argument("--run", default="runs/bench-translation-django")
    args = parser.parse_args(argv)
    try:
        pairs = django_pairs(args.language)
    except (ImportError, ValueError) as error:
        sys.exit(f"benchmarks/translation_real_data.py: {error}")
    os.makedirs(args.run, exist_ok=True)
    tsv = os.path.join(args.run, f"django-en-{args.language}.tsv")
    write_tsv(pairs, tsv)

    from tasks.translation import train

    report = train.main(["--data", tsv, "--out", os.path.join(args.run, "run"),
                         "--export-dir", os.path.join(args.run, "saved_models")])
    result = summarize(report, args.language, pairs)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"translation_real_data_{args.language}.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
