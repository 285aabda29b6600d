"""Transcript formatting a client asks for: numerals, smart formatting (currency, percentages, dates),
redaction, a profanity filter, fillers. Pure text transforms on a final's words.

Each transform works on words so that a word keeps its audio timing: a formatted word (a :class:`Span`)
names the first and last source words it was made from, so a number said in three words ("twenty five
dollars" → ``$25``) or a card number said in sixteen spans the time from its first word's start to its
last word's end, and a redacted word still says when it was spoken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

PUNCTUATION = '.,!?;:"()[]'
FILLERS = frozenset({"uh", "um"})  # stripped unless asked for (Deepgram's default)
REDACTIONS = frozenset({"pci", "ssn", "numbers"})
# placeholders of the redacted spans (a card number, its security code, a social security number, a number)
CARD, CVV, SSN, NUMBER = "[CREDIT_CARD]", "[CVV]", "[SSN]", "[NUMBER]"
# a filter, not a dictionary: the common English profanities, masked by asterisks (their length kept)
PROFANITY = frozenset(
    {"fuck", "fucking", "fucked", "fucker", "shit", "shitty", "bullshit", "bitch", "bastard", "asshole",
     "dick", "cunt", "motherfucker", "damn", "goddamn", "piss", "pissed", "crap", "slut", "whore"}
)  # fmt: skip

UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
MONTHS = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"}
)  # fmt: skip
CURRENCY = {
    "dollar": "$",
    "dollars": "$",
    "bucks": "$",
    "euro": "€",
    "euros": "€",
    "pound": "£",
    "pounds": "£",
}
SECURITY_CODE = frozenset({"cvv", "cvc", "cvv2", "csc"})
DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class TextFormat:
    """What a client asked its transcripts to look like."""

    punctuate: bool = False
    numerals: bool = False  # spoken numbers as digits
    smart_format: bool = False  # numerals, and currency, percentages and dates as written
    profanity_filter: bool = False
    redact: frozenset[str] = field(default_factory=frozenset)  # of REDACTIONS
    filler_words: bool = False  # False: "uh" and "um" stripped

    @property
    def digits(self) -> bool:
        return self.numerals or self.smart_format


@dataclass(frozen=True)
class Span:
    """One formatted word, made from source words ``first`` to ``last`` (inclusive)."""

    first: int
    last: int
    punctuated: str  # as written with punctuation and case
    word: str  # lower case, without punctuation around it


def format_words(tokens: Sequence[str], fmt: TextFormat) -> list[Span]:
    """The formatted words of a final's words (each as the model wrote it: " Hello,")."""
    spans = [_span(i, i, token.strip()) for i, token in enumerate(tokens)]
    spans = [s for s in spans if s.word and (fmt.filler_words or s.word not in FILLERS)]
    if fmt.digits:
        spans = _numbers(spans, fmt.smart_format)
    if fmt.redact:
        spans = _redact(spans, fmt.redact)
    if fmt.profanity_filter:
        spans = [_masked(s) if s.word in PROFANITY else s for s in spans]
    return spans


def format_text(text: str, fmt: TextFormat) -> str:
    """A transcript without word timings (an interim result, a model without them), formatted alike."""
    spans = format_words(text.split(), fmt)
    return " ".join(s.punctuated if fmt.punctuate else s.word for s in spans)


def _span(first: int, last: int, written: str) -> Span:
    return Span(first, last, written, written.strip(PUNCTUATION).lower())


def _affixes(written: str) -> tuple[str, str]:
    """The punctuation before and after a written word's core."""
    core = written.strip(PUNCTUATION)
    if not core:
        return written, ""
    start = written.index(core)
    return written[:start], written[start + len(core) :]


def _rewritten(spans: Sequence[Span], core: str) -> Span:
    """Source spans made into one with a new core, keeping the punctuation around the whole."""
    lead, _ = _affixes(spans[0].punctuated)
    _, trail = _affixes(spans[-1].punctuated)
    return Span(spans[0].first, spans[-1].last, f"{lead}{core}{trail}", core.lower())


def _closed(span: Span) -> bool:
    """A word followed by punctuation ends a phrase: a number does not run on past it."""
    return _affixes(span.punctuated)[1] != ""


# ---- numbers


def _number(spans: Sequence[Span], i: int) -> tuple[int, int] | None:
    """A number said in words from ``spans[i]`` ("two hundred and five thousand"): (its value, how many
    words), or None. Digits said one by one ("five six") are not one number: ``_digit_run``."""
    total, current, used, last = 0, 0, 0, ""  # last: the kind of the previous word
    j = i
    while j < len(spans):
        word = spans[j].word
        parts = word.replace("-", " ").split()
        if parts and all(p in UNITS or p in TENS for p in parts):
            value = sum(UNITS.get(p, 0) + TENS.get(p, 0) for p in parts)
            if last in ("", "scale", "hundred", "and") or (last == "tens" and 0 < value < 10):
                current += value
            elif j == i + 1 and 10 <= current < 100 and value >= 10:
                current = current * 100 + value  # a year: "nineteen ninety" (nine), "twenty twenty" (four)
            else:
                break
            last = "tens" if value >= 20 and value % 10 == 0 else "unit"
        elif word == "hundred" and last in ("unit", "tens") and current < 100:
            current *= 100
            last = "hundred"
        elif word in SCALES and last in ("unit", "tens", "hundred"):
            total += current * SCALES[word]
            current, last = 0, "scale"
        elif word == "and" and last in ("hundred", "scale") and j + 1 < len(spans):
            last = "and"
        else:
            break
        j += 1
        used = j - i
        if _closed(spans[j - 1]):
            break
    if last == "and":
        used -= 1
    return (total + current, used) if used else None


def _is_number_word(word: str) -> bool:
    return word in UNITS or word in TENS or word in SCALES or word == "hundred"


def _digit_run(spans: Sequence[Span], i: int) -> int:
    """How many single-digit words are said one after another from ``spans[i]`` ("four one one one")."""
    n = 0
    while i + n < len(spans) and UNITS.get(spans[i + n].word, 10) < 10:
        n += 1
        if _closed(spans[i + n - 1]):
            break
    return n


def _numbers(spans: list[Span], smart: bool) -> list[Span]:
    out: list[Span] = []
    i = 0
    while i < len(spans):
        run = _digit_run(spans, i)
        number = _number(spans, i)
        day = _day(spans, i) if smart and out and out[-1].word in MONTHS else None
        if day is not None:  # a date: "March fifth" -> "March 5th", "June twenty first" -> "June 21st"
            core, used = _ordinal(day[0]), day[1]
        elif run >= 2:  # digits said one by one: a code, a card, a phone number
            core, used = "".join(str(UNITS[s.word]) for s in spans[i : i + run]), run
        elif number is not None and not (number[1] == 1 and spans[i].word in ("one", "oh")):
            core, used = str(number[0]), number[1]  # (a lone "one" is a pronoun as often as not)
        else:
            out.append(spans[i])
            i += 1
            continue
        made = _rewritten(spans[i : i + used], core)
        i += used
        if smart:
            made, i = _smart(made, spans, i, out)
        out.append(made)
    return out


def _day(spans: Sequence[Span], i: int) -> tuple[int, int] | None:
    """A day of the month said as an ordinal from ``spans[i]``: (the day, how many words), or None."""
    word = spans[i].word
    if word in ORDINALS:
        return ORDINALS[word], 1
    following = spans[i + 1].word if i + 1 < len(spans) and not _closed(spans[i]) else ""
    if word in TENS and ORDINALS.get(following, 10) < 10:
        return TENS[word] + ORDINALS[following], 2
    return None


def _smart(made: Span, spans: list[Span], i: int, out: list[Span]) -> tuple[Span, int]:
    """A number's written form: currency ("$25.50"), a percentage ("5%"), a date ("March 5th")."""
    if out and out[-1].word in MONTHS and made.word.isdigit() and 1 <= int(made.word) <= 31:
        return _rewritten([made], _ordinal(int(made.word))), i
    if _closed(made) or i >= len(spans):
        return made, i
    unit = spans[i].word
    if unit in CURRENCY and made.word.isdigit():
        core, last = f"{CURRENCY[unit]}{made.word}", i
        cents = _number(spans, i + 2) if i + 2 < len(spans) and spans[i + 1].word == "and" else None
        if cents and i + 2 + cents[1] < len(spans) and spans[i + 2 + cents[1]].word in ("cents", "cent"):
            core, last = f"{core}.{cents[0]:02d}", i + 2 + cents[1]
        return _rewritten([made, *spans[i : last + 1]], core), last + 1
    if unit in ("percent", "per cent"):
        return _rewritten([made, spans[i]], f"{made.word}%"), i + 1
    return made, i


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---- redaction and masking


def _redact(spans: list[Span], kinds: frozenset[str]) -> list[Span]:
    """Card numbers (and their security codes), social security numbers, or every number, as
    placeholders; a number said in groups ("4111 1111 1111 1111") is one placeholder over its time."""
    out: list[Span] = []
    i = 0
    while i < len(spans):
        n, digits = 0, ""
        while i + n < len(spans) and spans[i + n].word.replace(",", "").isdigit():
            digits += spans[i + n].word.replace(",", "")
            n += 1
        if not n:
            numeric = DIGITS.search(spans[i].word) is not None
            out.append(_placeholder(spans[i : i + 1], NUMBER) if "numbers" in kinds and numeric else spans[i])
            i += 1
            continue
        group = spans[i : i + n]
        after_code = any(s.word in SECURITY_CODE or s.word == "code" for s in out[-3:])
        if "pci" in kinds and 13 <= len(digits) <= 19:
            out.append(_placeholder(group, CARD))
        elif "pci" in kinds and after_code and 3 <= len(digits) <= 4:
            out.append(_placeholder(group, CVV))
        elif "ssn" in kinds and len(digits) == 9 and [len(s.word) for s in group] in ([9], [3, 2, 4]):
            out.append(_placeholder(group, SSN))
        elif "numbers" in kinds:
            out.append(_placeholder(group, NUMBER))
        else:
            out.extend(group)
        i += n
    return out


def _placeholder(spans: Sequence[Span], label: str) -> Span:
    lead, _ = _affixes(spans[0].punctuated)
    _, trail = _affixes(spans[-1].punctuated)
    return Span(spans[0].first, spans[-1].last, f"{lead}{label}{trail}", label.lower())


def _masked(span: Span) -> Span:
    lead, trail = _affixes(span.punctuated)
    stars = "*" * len(span.word)
    return Span(span.first, span.last, f"{lead}{stars}{trail}", stars)
