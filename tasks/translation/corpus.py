"""The built-in parallel corpus: English -> Spanish, generated in code.

No network, one seed. The sentences follow a small grammar, but every rule a
translator has to learn is a real rule of Spanish:

- word order: adjectives follow their noun ("the red car" -> "el coche
  rojo"); object pronouns go before the verb ("i see her" -> "la veo");
  English do-support disappears ("she does not read" -> "ella no lee",
  "does he eat the apple?" -> "¿come él la manzana?");
- agreement: articles and adjectives agree with their noun in gender and
  number ("the red houses" -> "las casas rojas"), "one"/"twenty-one" with the
  gender of what they count ("21 houses" -> "veintiuna casas");
- inflection: regular -ar / -er / -ir verbs and a few irregular ones
  (tener, querer, ver) conjugated by person and number; plural nouns by the
  Spanish spelling rules (flor -> flores, lápiz -> lápices);
- pro-drop: "i eat" -> "como", "we live" -> "vivimos", but "he eats" ->
  "él come" (the third person keeps its subject);
- numbers and dates written out: "i have 23 books" -> "tengo veintitrés
  libros", "on may 3" -> "el tres de mayo".

Nouns belong to semantic classes, so verbs only take objects that make sense
(one eats an apple, reads a letter, never eats a letter).
"""

import random

# noun: (english singular, english plural, spanish singular, gender, classes)
NOUNS = [
    ("book", "books", "libro", "m", "thing readable"),
    ("letter", "letters", "carta", "f", "thing readable writable"),
    ("newspaper", "newspapers", "periódico", "m", "thing readable"),
    ("house", "houses", "casa", "f", "thing place_thing"),
    ("car", "cars", "coche", "m", "thing"),
    ("table", "tables", "mesa", "f", "thing"),
    ("window", "windows", "ventana", "f", "thing openable"),
    ("door", "doors", "puerta", "f", "thing openable"),
    ("shirt", "shirts", "camisa", "f", "thing wearable"),
    ("pencil", "pencils", "lápiz", "m", "thing"),
    ("flower", "flowers", "flor", "f", "thing"),
    ("tree", "trees", "árbol", "m", "thing"),
    ("train", "trains", "tren", "m", "thing"),
    ("apple", "apples", "manzana", "f", "thing food"),
    ("cake", "cakes", "pastel", "m", "thing food"),
    ("orange", "oranges", "naranja", "f", "thing food"),
    ("sandwich", "sandwiches", "bocadillo", "m", "thing food"),
    ("bread", "breads", "pan", "m", "thing food"),
    ("coffee", "coffees", "café", "m", "drink"),
    ("milk", "milks", "leche", "f", "drink"),
    ("juice", "juices", "zumo", "m", "drink"),
    ("dog", "dogs", "perro", "m", "animal"),
    ("cat", "cats", "gato", "m", "animal"),
    ("bird", "birds", "pájaro", "m", "animal"),
    ("man", "men", "hombre", "m", "person"),
    ("woman", "women", "mujer", "f", "person"),
    ("boy", "boys", "niño", "m", "person"),
    ("girl", "girls", "niña", "f", "person"),
    ("friend", "friends", "amigo", "m", "person"),
    ("sister", "sisters", "hermana", "f", "person"),
    ("brother", "brothers", "hermano", "m", "person"),
    ("teacher", "teachers", "profesor", "m", "person"),
    ("doctor", "doctors", "médica", "f", "person"),
    ("student", "students", "alumna", "f", "person"),
]

# adjective: (english, spanish masculine singular); the other forms follow
# the Spanish rules in `adjective_form`.
ADJECTIVES = [
    ("red", "rojo"), ("small", "pequeño"), ("big", "grande"), ("new", "nuevo"),
    ("old", "viejo"), ("blue", "azul"), ("green", "verde"), ("white", "blanco"),
    ("black", "negro"), ("cheap", "barato"), ("expensive", "caro"),
    ("beautiful", "bonito"), ("tall", "alto"), ("young", "joven"),
    ("happy", "feliz"), ("clean", "limpio"), ("dirty", "sucio"),
]
# Adjectives that can describe each kind of noun.
PERSON_ADJECTIVES = {"small", "big", "old", "tall", "young", "happy", "beautiful"}
THING_EXCLUDED = {"tall", "young", "happy"}
ANIMAL_ADJECTIVES = {"small", "big", "old", "white", "black", "beautiful", "happy",
                     "clean", "dirty", "young"}

# verb: (english base, english third person, spanish infinitive, object classes)
VERBS = [
    ("read", "reads", "leer", "readable"),
    ("write", "writes", "escribir", "writable"),
    ("buy", "buys", "comprar", "thing drink"),
    ("sell", "sells", "vender", "thing"),
    ("eat", "eats", "comer", "food"),
    ("drink", "drinks", "beber", "drink"),
    ("open", "opens", "abrir", "openable readable"),
    ("wash", "washes", "lavar", "thing animal"),
    ("need", "needs", "necesitar", "thing drink"),
    ("paint", "paints", "pintar", "thing"),
    ("want", "wants", "querer", "thing drink animal"),
    ("have", "has", "tener", "thing animal"),
    ("see", "sees", "ver", "thing animal person"),
    ("call", "calls", "llamar", "person animal"),
    ("help", "helps", "ayudar", "person"),
]
# Intransitive verbs with a place.
PLACE_VERBS = [
    ("work", "works", "trabajar"), ("live", "lives", "vivir"),
    ("study", "studies", "estudiar"), ("sing", "sings", "cantar"),
    ("run", "runs", "correr"), ("wait", "waits", "esperar"),
]
PLACES = [
    ("school", "escuela", "f"), ("park", "parque", "m"), ("kitchen", "cocina", "f"),
    ("market", "mercado", "m"), ("office", "oficina", "f"),
    ("library", "biblioteca", "f"), ("garden", "jardín", "m"),
    ("station", "estación", "f"), ("city", "ciudad", "f"), ("hospital", "hospital", "m"),
]
# person: english subject, english object, spanish subject, clitic object,
# grammatical person index (0 i, 1 you, 2 he/she, 3 we, 4 they), pro-drop.
PRONOUNS = [
    ("i", "me", "yo", "me", 0, True),
    ("you", "you", "tú", "te", 1, True),
    ("he", "him", "él", "lo", 2, False),
    ("she", "her", "ella", "la", 2, False),
    ("we", "us", "nosotros", "nos", 3, True),
    ("they", "them", "ellos", "los", 4, False),
]
IRREGULAR = {
    "tener": ["tengo", "tienes", "tiene", "tenemos", "tienen"],
    "querer": ["quiero", "quieres", "quiere", "queremos", "quieren"],
    "ver": ["veo", "ves", "ve", "vemos", "ven"],
}
ENDINGS = {
    "ar": ["o", "as", "a", "amos", "an"],
    "er": ["o", "es", "e", "emos", "en"],
    "ir": ["o", "es", "e", "imos", "en"],
}
MONTHS = [("january", "enero"), ("february", "febrero"), ("march", "marzo"),
          ("april", "abril"), ("may", "mayo"), ("june", "junio"), ("july", "julio"),
          ("august", "agosto"), ("september", "septiembre"), ("october", "octubre"),
          ("november", "noviembre"), ("december", "diciembre")]
MONTH_DAYS = {"february": 28, "april": 30, "june": 30, "september": 30,
              "november": 30}
MONTH_DAYS.update({name: 31 for name, _ in MONTHS if name not in MONTH_DAYS})
DAYS = [("monday", "lunes"), ("tuesday", "martes"), ("wednesday", "miércoles"),
        ("thursday", "jueves"), ("friday", "viernes"), ("saturday", "sábado"),
        ("sunday", "domingo")]
TIMES = [("today", "hoy"), ("every day", "todos los días"),
         ("in the morning", "por la mañana"), ("at night", "por la noche"),
         ("now", "ahora"), ("often", "a menudo")]

UNITS = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho",
         "nueve", "diez", "once", "doce", "trece", "catorce", "quince", "dieciséis",
         "diecisiete", "dieciocho", "diecinueve", "veinte", "veintiuno", "veintidós",
         "veintitrés", "veinticuatro", "veinticinco", "veintiséis", "veintisiete",
         "veintiocho", "veintinueve"]
TENS = {3: "treinta", 4: "cuarenta", 5: "cincuenta", 6: "sesenta", 7: "setenta",
        8: "ochenta", 9: "noventa"}


def number_words(value, gender=None):
    """1..99 in Spanish; before a noun, a final "uno" agrees with it
    (un libro, una casa, veintiún libros, treinta y una casas)."""
    if value < 30:
        words = UNITS[value]
    else:
        tens, unit = divmod(value, 10)
        words = TENS[tens] + (f" y {UNITS[unit]}" if unit else "")
    if gender and words.endswith("uno"):
        if gender == "f":
            words = words[:-1] + "a"
        else:
            words = words[:-1]
            if words.endswith("veintiun"):
                words = "veintiún"
    return words


def plural(word):
    """Spanish plural spelling: vowel +s, consonant +es, z -> ces, and the
    written accent that moves or goes (jardín -> jardines, árbol keeps it)."""
    if word[-1] in "aeiouéá":
        return word + "s"
    if word.endswith("z"):
        return word[:-1] + "ces"
    unaccent = {"ín": "in", "ón": "on", "án": "an", "és": "es"}
    for accented, plain in unaccent.items():
        if word.endswith(accented):
            return word[:-2] + plain + "es"
    if word == "joven":
        return "jóvenes"
    return word + "es"


def adjective_form(masculine, gender, number):
    if masculine.endswith("o"):
        word = masculine if gender == "m" else masculine[:-1] + "a"
    else:
        word = masculine  # grande, verde, azul, joven, feliz: one form per number
    return plural(word) if number == "pl" else word


def article(gender, number, definite=True):
    if definite:
        return {"m": {"sg": "el", "pl": "los"}, "f": {"sg": "la", "pl": "las"}}[gender][number]
    return {"m": "un", "f": "una"}[gender]


def personal_a(spanish_object):
    """A person as direct object takes "a"; "a el" contracts to "al"."""
    if spanish_object.startswith("el "):
        return "al " + spanish_object[3:]
    return "a " + spanish_object


def conjugate(infinitive, person):
    if infinitive in IRREGULAR:
        return IRREGULAR[infinitive][person]
    stem, ending = infinitive[:-2], infinitive[-2:]
    return stem + ENDINGS[ending][person]


def noun_phrase(rng, noun, number, determiner):
    """(english, spanish) of a noun phrase with an optional adjective.

    determiner: "the", "a", "my", or a count (int, 2..99).
    """
    english_singular, english_plural, spanish, gender, classes = noun
    allowed = [a for a in ADJECTIVES if a[0] not in THING_EXCLUDED]
    if "person" in classes:
        allowed = [a for a in ADJECTIVES if a[0] in PERSON_ADJECTIVES]
    elif "animal" in classes:
        allowed = [a for a in ADJECTIVES if a[0] in ANIMAL_ADJECTIVES]
    adjective = rng.choice(allowed) if rng.random() < 0.5 else None
    english_noun = english_plural if number == "pl" else english_singular
    spanish_noun = plural(spanish) if number == "pl" else spanish
    english = ([adjective[0]] if adjective else []) + [english_noun]
    spanish_words = [spanish_noun] + (
        [adjective_form(adjective[1], gender, number)] if adjective else [])
    if determiner == "the":
        english = ["the"] + english
        spanish_words = [article(gender, number)] + spanish_words
    elif determiner == "a":
        english = ["an" if english[0][0] in "aeiou" else "a"] + english
        spanish_words = [article(gender, "sg", definite=False)] + spanish_words
    elif determiner == "my":
        english = ["my"] + english
        spanish_words = ["mis" if number == "pl" else "mi"] + spanish_words
    else:
        english = [str(determiner)] + english
        spanish_words = [number_words(determiner, gender)] + spanish_words
    return " ".join(english), " ".join(spanish_words)


def random_object(rng, classes):
    candidates = [n for n in NOUNS if set(n[4].split()) & set(classes.split())]
    noun = rng.choice(candidates)
    roll = rng.random()
    if "drink" in noun[4]:
        return noun_phrase(rng, noun, "sg", rng.choice(["the", "a", "my"]))
    if roll < 0.2:
        count = rng.randint(2, 99)
        return noun_phrase(rng, noun, "pl", count)
    number = "pl" if rng.random() < 0.35 else "sg"
    determiner = rng.choice(["the", "the", "my"] + (["a"] if number == "sg" else []))
    return noun_phrase(rng, noun, number, determiner)


def random_subject(rng):
    """(english, spanish, person index, english verb form is 3rd singular)."""
    if rng.random() < 0.6:
        english, _, spanish, _, person, drop = rng.choice(PRONOUNS)
        return english, ("" if drop else spanish), person, person == 2
    people = [n for n in NOUNS if "person" in n[4] or "animal" in n[4]]
    noun = rng.choice(people)
    number = "pl" if rng.random() < 0.3 else "sg"
    english, spanish = noun_phrase(rng, noun, number, rng.choice(["the", "my"]))
    return english, spanish, (4 if number == "pl" else 2), number == "sg"


def random_time(rng):
    roll = rng.random()
    if roll < 0.55:
        return None
    if roll < 0.75:
        month_en, month_es = rng.choice(MONTHS)
        day = rng.randint(1, MONTH_DAYS[month_en])
        return f"on {month_en} {day}", f"el {number_words(day)} de {month_es}"
    if roll < 0.85:
        day_en, day_es = rng.choice(DAYS)
        return f"on {day_en}", f"el {day_es}"
    return rng.choice(TIMES)


def sentence(rng):
    """One (english, spanish) pair."""
    subject_en, subject_es, person, third = random_subject(rng)
    kind = rng.random()
    negative = rng.random() < 0.25
    question = rng.random() < 0.15
    time = random_time(rng)
    if kind < 0.15:  # a person as object pronoun: clitic before the verb
        verb_en, verb3_en, verb_es, _ = rng.choice(
            [v for v in VERBS if "person" in v[3]])
        _, obj_en, _, clitic, obj_person, _ = rng.choice(PRONOUNS)
        if obj_person == person:
            obj_en, clitic = ("me", "me") if person != 0 else ("you", "te")
        verb_part_es = f"{clitic} {conjugate(verb_es, person)}"
        object_en, object_es = obj_en, ""
    elif kind < 0.3:
        verb_en, verb3_en, verb_es = rng.choice(PLACE_VERBS)
        place_en, place_es, gender = rng.choice(PLACES)
        verb_part_es = conjugate(verb_es, person)
        object_en = f"in the {place_en}"
        object_es = f"en {article(gender, 'sg')} {place_es}"
        # "en el" stays two words in Spanish; "a el" would contract, "en" never does.
    else:
        verb_en, verb3_en, verb_es, classes = rng.choice(VERBS)
        object_en, object_es = random_object(rng, classes)
        if any(object_en.endswith((" " + n[1], " " + n[0]))
               for n in NOUNS if "person" in n[4]):
            object_es = personal_a(object_es)
        verb_part_es = conjugate(verb_es, person)
    if negative:
        verb_part_es = "no " + verb_part_es
    if question:
        auxiliary = "does" if third else "do"
        english = [auxiliary, subject_en] + (["not"] if negative else []) + [verb_en, object_en]
        spanish = [verb_part_es, subject_es, object_es]
    else:
        if negative:
            english = [subject_en, "does not" if third else "do not", verb_en, object_en]
        else:
            english = [subject_en, verb3_en if third else verb_en, object_en]
        spanish = [subject_es, verb_part_es, object_es]
    if time:
        english.append(time[0])
        spanish.append(time[1])
    english_text = " ".join(w for w in english if w)
    spanish_text = " ".join(w for w in spanish if w)
    if question:
        return english_text + "?", "¿" + spanish_text + "?"
    return english_text + ".", spanish_text + "."


def pairs(count, seed):
    """`count` distinct (english, spanish) pairs."""
    rng = random.Random(seed)
    seen, result = set(), []
    attempts = 0
    while len(result) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"the grammar cannot produce {count} distinct pairs")
        pair = sentence(rng)
        if pair[0] not in seen:
            seen.add(pair[0])
            result.append(pair)
    return result


def splits(num_train, num_val, num_test, seed=0):
    """Disjoint train / val / test lists of (english, spanish): no test
    sentence appears in training."""
    everything = pairs(num_train + num_val + num_test, seed)
    return (everything[:num_train], everything[num_train:num_train + num_val],
            everything[num_train + num_val:])
