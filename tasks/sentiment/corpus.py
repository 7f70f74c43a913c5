"""The built-in review corpus: generated in code, no network, one seed.

Short reviews of films, restaurants and gadgets built from templates. Most of
the sentiment is carried by one opinion word, but a good share of the reviews
turn on word order, which a bag-of-words model cannot see:

- negation: "not bad" is positive, "never boring" positive, "not great"
  negative;
- contrast: in "X but Y" the clause after "but" decides; in "although X, Y"
  the main clause Y decides;
- reported expectations: "i expected it to be great, but it was not";
- distractors: neutral filler ("i went on a tuesday with my sister") and
  typos in a few percent of the words.

So the majority class sits near 50%, a bag-of-words linear model clearly
above that but well short of 100%, and a model that reads order can beat it.
"""

import random

LABELS = ["negative", "positive"]

POSITIVE = [
    "good", "great", "excellent", "wonderful", "brilliant", "delightful",
    "superb", "enjoyable", "charming", "fantastic", "pleasant", "lovely",
    "impressive", "solid", "memorable", "fun", "beautiful", "clever",
]
NEGATIVE = [
    "bad", "terrible", "awful", "boring", "dull", "poor", "horrible",
    "disappointing", "weak", "bland", "tedious", "mediocre", "clumsy",
    "painful", "forgettable", "messy", "ugly", "annoying",
]
INTENSIFIERS = ["", "", "", "very ", "really ", "quite ", "truly ", "rather ",
                "so ", "incredibly ", "pretty "]
NEGATORS = ["not ", "not ", "never ", "not at all ", "hardly ", "in no way "]

DOMAINS = {
    "film": {
        "things": ["movie", "film", "story", "acting", "plot", "ending",
                   "soundtrack", "dialogue", "cast", "script", "pacing",
                   "camera work", "lead actor", "villain", "sequel"],
        "fillers": ["i saw it on a tuesday", "we watched it at home",
                    "my brother picked it", "it runs two hours",
                    "i went with my sister", "it was on television",
                    "the cinema was half empty", "we had popcorn"],
    },
    "restaurant": {
        "things": ["food", "service", "pasta", "soup", "dessert", "waiter",
                   "menu", "coffee", "pizza", "steak", "wine list",
                   "atmosphere", "kitchen", "staff", "breakfast"],
        "fillers": ["we booked a table for four", "it is near the station",
                    "we went on a friday", "my parents chose it",
                    "we sat by the window", "it was my birthday",
                    "the place opened last year", "we paid by card"],
    },
    "gadget": {
        "things": ["phone", "battery", "screen", "camera", "charger",
                   "keyboard", "speaker", "app", "laptop", "headphones",
                   "case", "software update", "microphone", "display",
                   "fan"],
        "fillers": ["i bought it last month", "it came in a blue box",
                    "my friend has the same one", "it arrived on monday",
                    "i use it every day", "the shop was busy",
                    "it was on sale", "i ordered it online"],
    },
}


def _opinion(rng, polarity):
    """(phrase, label) for an opinion word, possibly intensified."""
    words = POSITIVE if polarity else NEGATIVE
    return rng.choice(INTENSIFIERS) + rng.choice(words)


def _clause(rng, domain, negated=None):
    """A clause about one thing and its label (1 positive, 0 negative)."""
    thing = rng.choice(domain["things"])
    polarity = rng.random() < 0.5
    if negated is None:
        negated = rng.random() < 0.3
    if negated:
        # "not great" is negative, "not bad" positive.
        phrase = rng.choice(NEGATORS) + rng.choice(
            POSITIVE if polarity else NEGATIVE)
        label = int(not polarity)
    else:
        phrase = _opinion(rng, polarity)
        label = int(polarity)
    verb = rng.choice(["was", "was", "is", "felt", "seemed"])
    return f"the {thing} {verb} {phrase}", label


def _review(rng, domain):
    """One review text and its label, from one of several templates."""
    kind = rng.random()
    if kind < 0.35:
        text, label = _clause(rng, domain)
    elif kind < 0.55:
        # The clause after "but" decides; the first usually disagrees.
        first, first_label = _clause(rng, domain)
        second, label = _clause(rng, domain)
        while label == first_label and rng.random() < 0.7:
            second, label = _clause(rng, domain)
        text = f"{first} but {second}"
    elif kind < 0.70:
        # "although X, Y": the main clause Y decides.
        first, first_label = _clause(rng, domain)
        second, label = _clause(rng, domain)
        while label == first_label and rng.random() < 0.7:
            second, label = _clause(rng, domain)
        text = f"although {first}, {second}"
    elif kind < 0.82:
        # Expectation then outcome.
        polarity = rng.random() < 0.5
        word = rng.choice(POSITIVE if polarity else NEGATIVE)
        thing = rng.choice(domain["things"])
        if rng.random() < 0.5:
            text = f"i expected the {thing} to be {word} and it was"
            label = int(polarity)
        else:
            text = f"i expected the {thing} to be {word} but it was not"
            label = int(not polarity)
    elif kind < 0.92:
        # Recommendation phrasing.
        polarity = rng.random() < 0.5
        thing = rng.choice(domain["things"])
        recommend = rng.random() < 0.5
        word = rng.choice(POSITIVE if polarity else NEGATIVE)
        if recommend:
            text = f"i would recommend it , the {thing} is {word}"
            label = int(polarity)
        else:
            text = f"i would not say the {thing} is {word}"
            label = int(not polarity)
    else:
        # Two clauses that agree, joined by "and".
        first, label = _clause(rng, domain)
        second, second_label = _clause(rng, domain)
        while second_label != label:
            second, second_label = _clause(rng, domain)
        text = f"{first} and {second}"
    if rng.random() < 0.5:
        filler = rng.choice(domain["fillers"])
        text = f"{filler} . {text}" if rng.random() < 0.5 else f"{text} . {filler}"
    return text, label


def _typo(rng, word):
    if len(word) < 4:
        return word
    position = rng.randrange(1, len(word) - 1)
    action = rng.random()
    if action < 0.4:  # drop a letter
        return word[:position] + word[position + 1:]
    if action < 0.8:  # swap two letters
        return (word[:position - 1] + word[position] + word[position - 1]
                + word[position + 1:])
    return word[:position] + word[position] + word[position:]  # double one


def generate(count, seed, typo_rate=0.03):
    """`count` (text, label) pairs, the same for the same `seed`."""
    rng = random.Random(seed)
    names = sorted(DOMAINS)
    examples = []
    for _ in range(count):
        domain = DOMAINS[rng.choice(names)]
        text, label = _review(rng, domain)
        words = [_typo(rng, word) if rng.random() < typo_rate else word
                 for word in text.split(" ")]
        text = " ".join(words)
        if rng.random() < 0.3:
            text = text[0].upper() + text[1:]
        if rng.random() < 0.5:
            text += rng.choice([" .", " !", "", " ..."])
        examples.append((text, label))
    return examples


def splits(num_train, num_val, num_test, seed):
    """Disjoint train / val / test lists; val and test never repeat a
    training text, so the test score is not memorisation."""
    train = generate(num_train, seed)
    seen = {text for text, _ in train}
    held_out = []
    for text, label in generate(3 * (num_val + num_test) + 100, seed + 1):
        if text not in seen:
            seen.add(text)
            held_out.append((text, label))
        if len(held_out) == num_val + num_test:
            break
    return train, held_out[:num_val], held_out[num_val:num_val + num_test]
