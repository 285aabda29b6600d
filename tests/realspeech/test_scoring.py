"""How the accuracy bench and the corpus tests match finals to sentences and count what was lost."""

from __future__ import annotations

from typing import Any

from streamer_bench.corpus import Sentence
from streamer_bench.corpus_text import content_words
from streamer_bench.scoring import Tally, assign, content_recall, score


def sentence(text: str, start_ms: int, end_ms: int) -> Sentence:
    return Sentence(
        id=f"s{start_ms}", text=text, content_words=content_words(text), start_ms=start_ms, end_ms=end_ms
    )


def final(text: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return {"type": "transcript.final", "text": text, "audio_start_ms": start_ms, "audio_end_ms": end_ms}


SENTENCES = [
    sentence("Please, keep your voice down.", 500, 2200),
    sentence("The train was late again this morning.", 3000, 5000),
    sentence("Good morning, everyone.", 6000, 7000),
]


def test_a_sentence_no_final_overlaps_is_lost() -> None:
    events = [final("Please keep your voice down.", 300, 2500), final("Good morning everyone.", 5900, 7300)]
    tally = score(events, SENTENCES)
    assert (tally.lost, tally.split, tally.stray, tally.finals) == (1, 0, 0, 2)
    assert tally.ref_words == 15 and tally.edits_ref == 7  # the lost sentence's seven words are deletions
    assert tally.summary()["offline_wer"] is None  # no offline transcripts, no offline WER


def test_two_sentences_heard_as_one_utterance_are_merged_not_lost() -> None:
    both = final("Please keep your voice down. The train was late again this morning.", 400, 5100)
    tally = score([both, final("Good morning, everyone.", 6000, 7000)], SENTENCES)
    assert (tally.lost, tally.merged, tally.split, tally.stray) == (0, 1, 0, 0)
    assert tally.edits_ref == 0


def test_a_final_belongs_to_the_sentence_it_overlaps_most() -> None:
    # a final that runs past its sentence into the next one's first 200 ms still belongs to the first
    owned = assign(
        [final("the train was late again", 2900, 5200), final("this morning", 4800, 6100)], SENTENCES
    )
    assert [len(o) for o in owned] == [0, 2, 0]
    tally = score(
        [final("the train was late again", 2900, 5200), final("this morning", 4800, 6100)], SENTENCES
    )
    # the first sentence has nothing; the third is touched by the second final only, which the second owns
    assert (tally.lost, tally.merged, tally.split) == (1, 1, 1)


def test_finals_outside_every_sentence_are_stray() -> None:
    events = [final("Thank you.", 7500, 8000), *(final(s.text, s.start_ms, s.end_ms) for s in SENTENCES)]
    tally = score(events, SENTENCES, offline=[s.text for s in SENTENCES])
    assert (tally.lost, tally.split, tally.stray) == (0, 0, 1)
    assert tally.edits_offline == 2  # "thank you" inserted against the offline transcripts too
    assert tally.offline_edits_ref == 0


def test_warnings_and_errors_are_counted() -> None:
    events = [
        {"type": "warning", "code": "unrecognized_speech", "segment_id": 1, "message": "..."},
        {"type": "warning", "code": "lagging", "message": "..."},
        {"type": "error", "code": "overloaded", "message": "...", "retryable": True},
    ]
    tally = score(events, SENTENCES)
    assert (tally.unrecognized, tally.errors, tally.lost) == (1, ["overloaded"], 3)


def test_tallies_add_up_and_summarize() -> None:
    total = Tally()
    total.add(
        score(
            [final("Please keep your boy down.", 400, 2300)], SENTENCES[:1], ["please keep your voice down"]
        )
    )
    total.add(score([], SENTENCES[1:2], ["the train was late again this morning"]))
    summary = total.summary()
    assert summary["sentences"] == 2 and summary["lost"] == 1 and summary["finals"] == 1
    assert summary["wer"] == round((1 + 7) / 12, 4)  # "boy" for "voice", then seven words lost
    assert summary["offline_wer"] == 0.0


def test_content_recall_ignores_function_words() -> None:
    s = SENTENCES[0]
    assert s.content_words == ["please", "keep", "voice"]
    assert content_recall(s, "Please, keep the voice down!") == 1.0
    assert content_recall(s, "Please keep your boy down. Please keep your boy down.") == 2 / 3
