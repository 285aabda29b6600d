"""Deepgram's formatting options as pure transforms on a final's words (streamer/pipeline/textformat.py):
tables of what is said and what is written, and word timing kept through every transform."""

from __future__ import annotations

import pytest

from streamer.pipeline.textformat import Span, TextFormat, format_text, format_words

NUMERALS = TextFormat(punctuate=True, numerals=True)
SMART = TextFormat(punctuate=True, smart_format=True)


def redact(*kinds: str, **more: bool) -> TextFormat:
    return TextFormat(punctuate=True, numerals=True, redact=frozenset(kinds), **more)


TABLE = [
    # numerals: numbers said in words, written in digits
    (NUMERALS, "I have twenty five cats.", "I have 25 cats."),
    (NUMERALS, "two hundred and five thousand people", "205000 people"),
    (NUMERALS, "one hundred and one dalmatians", "101 dalmatians"),
    (NUMERALS, "call four one one now", "call 411 now"),
    (NUMERALS, "born in nineteen ninety nine", "born in 1999"),
    (NUMERALS, "one of them, and three.", "one of them, and 3."),  # a lone "one" is a pronoun
    (NUMERALS, "twenty, thirty", "20, 30"),  # punctuation ends a number
    (NUMERALS, "Ninety-nine problems", "99 problems"),
    (TextFormat(punctuate=True), "twenty five dollars", "twenty five dollars"),  # not asked: as said
    # smart_format: currency, percentages, dates, beyond the numerals
    (SMART, "I paid twenty five dollars.", "I paid $25."),
    (SMART, "It was twenty five dollars and fifty cents.", "It was $25.50."),
    (SMART, "about five percent", "about 5%"),
    (SMART, "on March fifth at three", "on March 5th at 3"),
    (SMART, "by June twenty first", "by June 21st"),
    (SMART, "ten euros", "€10"),
    (NUMERALS, "I paid twenty five dollars.", "I paid 25 dollars."),  # numerals alone: digits only
    # redaction, after the numbers are written
    (redact("pci"), "my card is four one one one one one one one one one one one one one one one ok",
     "my card is [CREDIT_CARD] ok"),
    (redact("pci"), "card 4111 1111 1111 1111, thanks", "card [CREDIT_CARD], thanks"),
    (redact("pci"), "the security code is one two three", "the security code is [CVV]"),
    (redact("pci"), "I am thirty years old", "I am 30 years old"),  # not a card
    (redact("ssn"), "ssn 123 45 6789 thanks", "ssn [SSN] thanks"),
    (redact("ssn"), "it is one two three four five six seven eight nine", "it is [SSN]"),
    (redact("ssn"), "call 123 4567", "call 123 4567"),
    (redact("numbers"), "I have 3 cats and forty two dogs.", "I have [NUMBER] cats and [NUMBER] dogs."),
    (redact("numbers", "pci"), "card 4111 1111 1111 1111 and 7 more", "card [CREDIT_CARD] and [NUMBER] more"),
    # the profanity filter masks, keeping the length
    (TextFormat(punctuate=True, profanity_filter=True), "What the fuck, shit.", "What the ****, ****."),
    (TextFormat(punctuate=True), "What the fuck.", "What the fuck."),
    # fillers: stripped unless asked for (Deepgram's default)
    (TextFormat(punctuate=True), "Um, I think, uh, yes.", "I think, yes."),
    (TextFormat(punctuate=True, filler_words=True), "Um, I think, uh, yes.", "Um, I think, uh, yes."),
    # without punctuate: lower case words
    (TextFormat(numerals=True), "Twenty five Cats.", "25 cats"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "said", "written"), TABLE)
def test_a_transcript_is_written_as_asked(fmt: TextFormat, said: str, written: str) -> None:
    assert format_text(said, fmt) == written


def test_a_formatted_word_spans_the_words_it_was_made_from() -> None:
    tokens = [" I", " paid", " twenty", " five", " dollars", " and", " fifty", " cents."]
    assert format_words(tokens, SMART) == [
        Span(0, 0, "I", "i"),
        Span(1, 1, "paid", "paid"),
        Span(2, 7, "$25.50.", "$25.50"),
    ]


def test_a_redacted_card_keeps_its_time_and_nothing_of_its_digits() -> None:
    tokens = [" Card", " 4111", " 1111", " 1111", " 1111,", " please."]
    spans = format_words(tokens, redact("pci"))
    assert spans[1] == Span(1, 4, "[CREDIT_CARD],", "[credit_card]")
    assert not any("1111" in s.punctuated for s in spans)


def test_every_source_word_is_in_at_most_one_span_in_order() -> None:
    tokens = ["Um", "so", "twenty", "five", "dollars,", "card", "4111", "1111", "1111", "1111", "and", "damn"]
    fmt = redact("pci", "numbers", profanity_filter=True, smart_format=True)
    spans = format_words(tokens, fmt)
    covered = [i for s in spans for i in range(s.first, s.last + 1)]
    assert covered == sorted(set(covered))
