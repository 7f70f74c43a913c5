"""The built-in corpus: short English sentences spoken by espeak-ng.

It needs no network: espeak-ng installs from the system packages
(`apt-get install espeak-ng`). On first use the sentences are synthesized
with a progress bar and cached as an LJSpeech-format folder
(`metadata.csv`, `wavs/<id>.wav`), so the folder loader reads it like any
other data. Every word is in the CMU dictionary pocketsphinx ships, so the
recognizer can transcribe every test sentence.
"""

import concurrent.futures
import hashlib
import os
import random
import shutil
import subprocess

from common.errors import UserError

INSTALL_HINT = ("install it with `apt-get install espeak-ng` (Debian/Ubuntu) or "
                "`brew install espeak-ng` (macOS)")

_ADJECTIVES = ["red", "green", "blue", "small", "big", "old", "new", "warm", "cold", "dark", "bright", "quiet", "loud", "happy", "sad", "quick", "slow", "tall", "short", "soft"]
_NOUNS = ["dog", "cat", "bird", "house", "river", "garden", "child", "teacher", "doctor", "farmer", "window", "door", "table", "letter", "train", "boat", "road", "city", "forest", "mountain", "apple", "bread", "song", "book", "horse", "lamp", "ship", "field", "market", "station"]
_VERBS = ["found", "saw", "opened", "closed", "painted", "carried", "watched", "followed", "cleaned", "visited", "bought", "sold", "wanted", "needed", "moved", "reached"]
_PLACES = ["near the river", "in the garden", "by the window", "at the station", "on the road", "in the city", "under the table", "across the field", "behind the house", "before the market"]
_TIMES = ["today", "last night", "this morning", "every day", "after dinner", "on monday", "at noon"]
_NAMES = ["john", "mary", "peter", "anna", "david", "sarah", "paul", "linda"]


def sentences(count, seed=1234):
    """`count` distinct sentences from a few templates, always the same for
    the same count and seed (the corpus does not depend on the run's seed)."""
    rng = random.Random(seed)
    templates = (
        lambda: f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} "
                f"{rng.choice(_VERBS)} the {rng.choice(_NOUNS)}.",
        lambda: f"{rng.choice(_NAMES)} {rng.choice(_VERBS)} a {rng.choice(_ADJECTIVES)} "
                f"{rng.choice(_NOUNS)} {rng.choice(_PLACES)}.",
        lambda: f"{rng.choice(_TIMES)}, the {rng.choice(_NOUNS)} {rng.choice(_VERBS)} "
                f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}.",
        lambda: f"did {rng.choice(_NAMES)} see the {rng.choice(_ADJECTIVES)} "
                f"{rng.choice(_NOUNS)} {rng.choice(_PLACES)}?",
    )
    seen, result = set(), []
    while len(result) < count:
        sentence = rng.choice(templates)()
        if sentence not in seen:
            seen.add(sentence)
            result.append(sentence[0].upper() + sentence[1:])
    return result


def find_espeak():
    """The espeak-ng (or espeak) executable's path, or None."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def espeak_command():
    """The espeak-ng executable, or a UserError with the install command."""
    path = find_espeak()
    if path:
        return path
    raise UserError(f"the built-in TTS corpus needs the espeak-ng synthesizer, which "
                    f"is not installed; {INSTALL_HINT}; or pass --data PATH with an "
                    "LJSpeech-format folder")


def espeak_version(command):
    result = subprocess.run([command, "--version"], capture_output=True, text=True,
                            timeout=30, check=False)
    return result.stdout.strip()


def _speak(command, voice, words_per_minute, text, path):
    result = subprocess.run([command, "-v", voice, "-s", str(words_per_minute),
                             "-w", path, text], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0 or not os.path.exists(path):
        raise UserError(f"espeak-ng failed on {text!r} (voice {voice!r}): "
                        f"{result.stderr.strip() or result.returncode}")


def speak(text, path, voice="en-us", words_per_minute=165):
    """One sentence spoken by espeak-ng into the WAV file `path`."""
    _speak(espeak_command(), voice, words_per_minute, text, path)


def default_cache_dir():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or
                        os.path.join(os.path.expanduser("~"), ".cache"), "edge-tasks", "tts")


def builtin_corpus(count, voice="en-us", words_per_minute=165, cache_dir="",
                   progress=True):
    """The folder of the built-in corpus of `count` sentences, synthesized
    on first use and cached (keyed by the sentences, voice, rate and the
    espeak-ng version)."""
    command = espeak_command()
    texts = sentences(count)
    key = hashlib.sha256("\n".join(
        texts + [voice, str(words_per_minute), espeak_version(command)]).encode()
    ).hexdigest()[:12]
    root = cache_dir or default_cache_dir()
    folder = os.path.join(root, f"espeak-{count}-{key}")
    if os.path.exists(os.path.join(folder, "metadata.csv")):
        return folder
    os.makedirs(root, exist_ok=True)
    temporary = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(os.path.join(temporary, "wavs"))
    ids = [f"SYN-{index:05d}" for index in range(count)]
    from tqdm import tqdm

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_speak, command, voice, words_per_minute, text,
                            os.path.join(temporary, "wavs", f"{name}.wav"))
                for name, text in zip(ids, texts)]
        for job in tqdm(concurrent.futures.as_completed(jobs), total=count,
                        desc=f"espeak-ng: built-in corpus ({count} sentences)",
                        disable=not progress, unit="sentence"):
            job.result()
    with open(os.path.join(temporary, "metadata.csv"), "w", encoding="utf-8") as handle:
        handle.writelines(f"{name}|{text}|{text}\n" for name, text in zip(ids, texts))
    try:
        os.rename(temporary, folder)
    except OSError:  # another process finished the same corpus first
        shutil.rmtree(temporary, ignore_errors=True)
    return folder
