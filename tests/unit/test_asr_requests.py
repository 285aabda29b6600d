"""What a request may ask of the model (prompt, hotwords, temperature, log-probabilities), on tiny.en."""

from __future__ import annotations

import numpy as np
import pytest
from support import read_pcm16

from streamer.pipeline.asr import AsrEngine, AsrRequest

LOWERCASE_PROMPT = "hello there how are you doing i am fine thanks"


def _audio(name: str) -> np.ndarray:
    return read_pcm16(name).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def utterances() -> list[np.ndarray]:
    return [_audio(f"en_utt{i}.wav") for i in (1, 2, 3)]


def test_the_prompt_steers_the_style_of_each_item(
    tiny_engine: AsrEngine, utterances: list[np.ndarray]
) -> None:
    plain, prompted = tiny_engine.transcribe_batch(
        [AsrRequest(utterances[1]), AsrRequest(utterances[1], prompt=LOWERCASE_PROMPT)]
    )
    assert plain.text == "Please open the window and let some fresh air into the room."
    # Whisper continues the previous text's style: no capitals, no punctuation
    assert prompted.text == "please open the window and let some fresh air into the room"


def test_prompts_of_different_lengths_in_one_batch_decode_as_alone(
    tiny_engine: AsrEngine, utterances: list[np.ndarray]
) -> None:
    requests = [
        AsrRequest(utterances[0]),
        AsrRequest(utterances[1], prompt=LOWERCASE_PROMPT),
        AsrRequest(utterances[2], prompt="Good morning."),
    ]
    together = [r.text for r in tiny_engine.transcribe_batch(requests)]
    alone = [tiny_engine.transcribe_batch([r])[0].text for r in requests]
    assert together == alone


def test_a_long_prompt_leaves_the_decode_its_budget(
    tiny_engine: AsrEngine, utterances: list[np.ndarray]
) -> None:
    # CTranslate2 counts the prompt in max_length: 100 tokens of previous text must not cut the answer
    prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    (result,) = tiny_engine.transcribe_batch([AsrRequest(utterances[2], prompt=prompt)])
    # (a repetitive prompt makes tiny.en repeat the sentence: what matters is that none of it is cut)
    assert result.text.lower().startswith("we are going to visit our friends in the city this weekend")


def test_temperature_is_part_of_the_group_and_of_the_result(
    tiny_engine: AsrEngine, utterances: list[np.ndarray]
) -> None:
    cold, warm = AsrRequest(utterances[0]), AsrRequest(utterances[0], temperature=0.5)
    assert cold.group != warm.group
    assert AsrRequest(utterances[0], prompt="a").group == cold.group  # prompts share a batch
    results = tiny_engine.transcribe_batch([cold, warm])
    assert [(r.temperature, r.decode) for r in results] == [(0.0, "greedy"), (0.5, "t0.5")]
    assert results[1].text  # one sample at 0.5: some text, not necessarily the greedy one


def test_logprobs_are_per_token_and_only_on_request(
    tiny_engine: AsrEngine, utterances: list[np.ndarray]
) -> None:
    plain, asked = tiny_engine.transcribe_batch(
        [AsrRequest(utterances[0]), AsrRequest(utterances[0], logprobs=True)]
    )
    assert plain.logprobs is None
    assert asked.logprobs is not None
    assert "".join(token for token, _ in asked.logprobs).strip() == asked.text
    assert len(asked.logprobs) == len(asked.tokens) > 5
    assert all(lp <= 0.0 for _, lp in asked.logprobs)
    # the decode's score is the mean log-probability of its tokens and the end of text
    assert np.mean([lp for _, lp in asked.logprobs]) == pytest.approx(asked.avg_logprob, abs=0.2)


def test_hotwords_come_before_the_prompt(tiny_engine: AsrEngine, utterances: list[np.ndarray]) -> None:
    (result,) = tiny_engine.transcribe_batch(
        [AsrRequest(utterances[1], hotwords="window room", prompt=LOWERCASE_PROMPT)]
    )
    assert result.text == "please open the window and let some fresh air into the room"
