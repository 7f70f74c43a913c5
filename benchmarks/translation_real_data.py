"""Translation on a small real parallel corpus: the default preset through
`--data PATH` against the copy-the-source baseline, as JSON.

    pip install django   # only for its translation catalogues
    python benchmarks/translation_real_data.py [--language fr] [--run DIR]

The corpus: the English -> LANGUAGE user-interface strings of the compiled
gettext catalogues (`.mo`) that ship inside Django, human translations of
menus, messages and field names; single-line, non-plural entries, one pair
per distinct English string (about 800 for French). Written as a TSV that
`python -m tasks.translation.train --data` reads.
"""

import argparse
import gettext
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def django_pairs(language):
    """{English: translation} from every Django catalogue for `language`."""
    try:
        import django
    except ImportError:
        sys.exit("this benchmark reads Django's translation catalogues: pip install django")
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
        sys.exit(f"Django ships no catalogue for language {language!r}")
    return pairs


def write_tsv(pairs, path):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("source\ttarget\n")
        for source, target in pairs.items():
            handle.write(f"{source}\t{target}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="fr")
    parser.add_argument("--run", default="runs/bench-translation-django")
    args = parser.parse_args(argv)
    os.makedirs(args.run, exist_ok=True)
    tsv = os.path.join(args.run, f"django-en-{args.language}.tsv")
    pairs = django_pairs(args.language)
    write_tsv(pairs, tsv)

    from tasks.translation import train

    report = train.main(["--data", tsv, "--out", os.path.join(args.run, "run"),
                         "--export-dir", os.path.join(args.run, "saved_models")])
    metrics = report["metrics"]
    result = {"corpus": f"Django .mo catalogues, en -> {args.language}", "pairs": len(pairs),
              "bleu": {name: metrics[name]["bleu"] for name in
                       ("float", "int8", "ptq_int8", "qat_int8") if name in metrics},
              "baseline": metrics["baseline"], "seconds": report["seconds"],
              "chosen_epochs": report.get("chosen_epochs")}
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"translation_real_data_{args.language}.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
