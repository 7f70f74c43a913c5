"""Text-to-speech on a small real speech corpus: the default preset through
`--data PATH` (an LJSpeech-format folder), its word error rate next to the
recognizer on the real recordings, as JSON.

    apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en
    python benchmarks/tts_real_data.py [--run DIR] [--init RUN] [--set KEY=VALUE] [--resume]

The corpus: the English voice prompts Debian's Asterisk packages ship,
recorded by one professional speaker (Allison Smith, US English; CC-BY-SA
3.0): mono 16-bit WAVs at 8 kHz in /usr/share/asterisk/sounds/en_US_f_Allison
and their transcripts, one `name: text` line each, in
/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz. Kept: prompts
of at least three words whose text has no tone or effect description
(`[...]`, `<...>`) and no key symbols (`*`, `#`), and whose recording fits
the default model's longest output (`model.max_decoder_steps` x
`model.reduction` frames). Written as `metadata.csv` + `wavs/`; the
training run resamples 8 kHz to the preset's 16 kHz and says so.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import wave

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SOUNDS = "/usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
INSTALL_HINT = ("the real speech is Debian's Asterisk voice prompts: apt-get install "
                "asterisk-core-sounds-en-wav asterisk-core-sounds-en")


def asterisk_prompts(max_seconds):
    """[(name, text, wav path, seconds)] of the usable prompts, in name order."""
    if not (os.path.isdir(SOUNDS) and os.path.exists(TRANSCRIPTS)):
        raise FileNotFoundError(f"{SOUNDS} or {TRANSCRIPTS} missing; {INSTALL_HINT}")
    prompts = []
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = (part.strip() for part in line.split(":", 1))
            text = re.sub(r"\s+", " ", text)
            path = os.path.join(SOUNDS, f"{name}.wav")
            if (not text or re.search(r"[\[\]<>*#]", text) or len(text.split()) < 3
                    or not os.path.exists(path)):
                continue
            with wave.open(path) as audio:
                seconds = audio.getnframes() / audio.getframerate()
            if seconds <= max_seconds:
                prompts.append((name, text, path, seconds))
    return sorted(prompts)


def prompts_for(cfg):
    """The prompts that fit `cfg`'s longest output; trimming silence
    shortens most recordings, so a 20% margin keeps those that fit."""
    longest = cfg.model.max_decoder_steps * cfg.model.reduction * cfg.audio.hop_length
    return asterisk_prompts(1.2 * longest / cfg.audio.sample_rate)


def write_ljspeech_folder(prompts, folder):
    """metadata.csv (`id|text|text`) and wavs/<id>.wav; ids without slashes."""
    os.makedirs(os.path.join(folder, "wavs"), exist_ok=True)
    with open(os.path.join(folder, "metadata.csv"), "w", encoding="utf-8") as handle:
        for name, text, path, _ in prompts:
            identifier = name.replace("/", "-")
            shutil.copy(path, os.path.join(folder, "wavs", f"{identifier}.wav"))
            handle.write(f"{identifier}|{text}|{text}\n")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/bench-tts-asterisk")
    parser.add_argument("--init", default=None,
                        help="start from an earlier TTS run's weights (its folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a preset setting changed for this run")
    parser.add_argument("--name", default="asterisk",
                        help="results/tts_real_data_NAME.json")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --run")
    args = parser.parse_args(argv)

    from common import config
    from tasks.tts import PRESETS, Config

    cfg = config.from_preset(Config, PRESETS, "default")
    try:
        prompts = prompts_for(cfg)
    except FileNotFoundError as error:
        sys.exit(f"benchmarks/tts_real_data.py: {error}")
    folder = write_ljspeech_folder(prompts, os.path.join(args.run, "asterisk-allison"))

    from tasks.tts import train

    extra = (["--init", args.init] if args.init else []) + (
        ["--resume"] if args.resume else []) + [
        argument for override in args.overrides for argument in ("--set", override)]
    report = train.main(["--data", folder, "--out", os.path.join(args.run, "run"),
                         "--export-dir", os.path.join(args.run, "saved_models"), *extra])
    metrics = report["metrics"]
    result = {
        "data": folder, "init": args.init, "overrides": args.overrides,
        "prompts": len(prompts),
        "seconds_of_speech": round(sum(prompt[3] for prompt in prompts), 1),
        "data_summary": report.get("data_summary"),
        "wer": {name: values["wer"] for name, values in metrics.items()
                if isinstance(values, dict) and "wer" in values},
        "wer_baselines": {name: values.get("wer")
                          for name, values in metrics.get("baselines", {}).items()},
        "seconds": report["seconds"],
        "notes": report.get("notes", []),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"tts_real_data_{args.name}.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
