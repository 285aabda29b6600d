"""Log-Mel features computed at submission: the same features, the same transcripts, one BLAS thread."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor
from support import read_pcm16

from streamer.pipeline.asr import AsrEngine, AsrRequest, WhisperEngine, bucket_frames
from streamer.pipeline.features import extend, log_mel, pin_blas_threads, silence_value


def _speech(name: str = "en_utt1.wav") -> np.ndarray:
    return read_pcm16(name).astype(np.float32) / 32768.0


@pytest.mark.parametrize("seconds", [0.4, 2.0, 4.9])
@pytest.mark.parametrize("target", [1000, 1500, 3000])
def test_extending_features_equals_computing_them_in_the_larger_window(seconds: float, target: int) -> None:
    extractor = FeatureExtractor(feature_size=80)
    audio = _speech()[: int(seconds * 16000)]
    own = log_mel(extractor, audio, 500)
    direct = log_mel(extractor, audio, target)
    extended = extend(own, target)
    assert extended.shape == direct.shape == (80, target)
    np.testing.assert_allclose(extended, direct, atol=1e-5)


def test_silence_extends_silence() -> None:
    extractor = FeatureExtractor(feature_size=80)
    quiet = np.zeros(16000, dtype=np.float32)
    own = log_mel(extractor, quiet, 500)
    assert silence_value(own) == pytest.approx(-1.5)
    np.testing.assert_allclose(extend(own, 1000), log_mel(extractor, quiet, 1000), atol=1e-6)


def test_numpy_blas_is_pinned_to_one_thread() -> None:
    from threadpoolctl import threadpool_info

    assert pin_blas_threads()
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


@pytest.mark.slow
def test_prepared_requests_decode_exactly_as_unprepared(tiny_engine: AsrEngine) -> None:
    assert isinstance(tiny_engine, WhisperEngine)
    clips = [_speech("en_utt1.wav"), _speech("en_utt2.wav")[: 3 * 16000]]
    requests = [AsrRequest(clip) for clip in clips]
    prepared = [tiny_engine.prepare(r) for r in requests]
    for request, ready in zip(requests, prepared, strict=True):
        assert ready.mel is not None
        assert ready.mel.shape[1] == bucket_frames(request.audio.size, True)
    plain = tiny_engine.transcribe_batch(requests)
    fast = tiny_engine.transcribe_batch(prepared)
    assert [r.text for r in fast] == [r.text for r in plain]
    assert all(r.text for r in plain)
    np.testing.assert_allclose([r.avg_logprob for r in fast], [r.avg_logprob for r in plain], atol=1e-4)
