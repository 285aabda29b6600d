"""``streamer bench-mt``: translation throughput through the server's path vs. the bare CTranslate2 call.

N concurrent "sessions" each translate final texts one after another, the way a session's emitter does
(it awaits one final's translations before the next), through the server's own
:class:`~streamer.pipeline.translation.TranslationService` and ``MicroBatcher`` (built by
:func:`streamer.app.build_translation`, cache disabled so every text reaches the model). Every
``ctranslate2.Translator.translate_batch`` call the server path makes is recorded and then replayed
directly, one after another on the same model object: the same batch composition, tokens and options,
without asyncio, the batcher thread, the batch wait or SentencePiece. A third path replays the same text
batches through ``CT2Translator.translate_batch`` (the engine with its SentencePiece framing), which
splits the overhead into tokenization and serving.

Reported per N: sentences/s, per-sentence latency p50/p95 (server: submit -> result; replays: the
duration of the call the sentence was in), overhead = direct sentences/s / path sentences/s, and for the
server path the share of its wall time the model thread spent inside ``translate_batch`` (measured within
the same run, so it does not depend on comparing runs on a busy machine).

``--model DIR`` takes any CTranslate2 translation model the server can load. Without it a *synthetic*
model is built: a real CTranslate2 Transformer in the NLLB-200 layout, but with one layer, d_model 16 and
random weights (the same builder the tests use). Random weights almost never emit ``</s>``, so every
sentence decodes to the 256-token limit: a model call of a few milliseconds whatever the input. The
numbers then measure the server's overhead around a model call, not the speed (or quality) of any real
model.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.app import build_translation, load_mt_engine
from streamer.config import Settings
from streamer.errors import UnsupportedLanguageError
from streamer.metrics import Metrics
from streamer.pipeline.mt import CT2Translator, TranslationEngine

# --- a synthetic translation model (random weights), for the benchmark and the tests

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq's order, which NLLB and M2M100 conversions keep
D_MODEL, D_FFN = 16, 32


def train_spm(words: Sequence[str], seed: int, vocab_size: int = 80) -> bytes:
    """A serialized BPE SentencePiece model trained on random sentences made of ``words``."""
    import sentencepiece

    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(300)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        minloglevel=2,
    )
    return model.getvalue()


def spm_pieces(model: bytes) -> list[str]:
    """Every piece of a serialized SentencePiece model, in id order."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def make_vocabulary(*token_lists: Iterable[str]) -> list[str]:
    """Special tokens first, then every other token once, in order."""
    return list(dict.fromkeys([*SPECIALS, *(t for tokens in token_lists for t in tokens)]))


def save_random_transformer(
    out_dir: Path, vocabulary: list[str], *, marian: bool = False, seed: int = 0
) -> None:
    """Write a one-layer, d_model 16 CTranslate2 Transformer with random weights and a shared
    ``vocabulary`` to ``out_dir``. Marian models are post-norm and start decoding from a zero embedding;
    NLLB and M2M100 are pre-norm."""
    from ctranslate2.specs import transformer_spec

    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def linear(spec: Any, out_dim: int, in_dim: int) -> None:
        spec.weight = weights(out_dim, in_dim)
        spec.bias = np.zeros(out_dim, np.float32)

    def norm(spec: Any) -> None:
        spec.gamma = np.ones(D_MODEL, np.float32)
        spec.beta = np.zeros(D_MODEL, np.float32)

    def attention(spec: Any, self_attention: bool) -> None:
        if self_attention:
            linear(spec.linear[0], 3 * D_MODEL, D_MODEL)  # fused q, k, v
        else:
            linear(spec.linear[0], D_MODEL, D_MODEL)  # q from the decoder
            linear(spec.linear[1], 2 * D_MODEL, D_MODEL)  # fused k, v from the encoder
        linear(spec.linear[-1], D_MODEL, D_MODEL)
        norm(spec.layer_norm)

    def ffn(spec: Any) -> None:
        norm(spec.layer_norm)
        linear(spec.linear_0, D_FFN, D_MODEL)
        linear(spec.linear_1, D_MODEL, D_FFN)

    spec = transformer_spec.TransformerSpec.from_config((1, 1), num_heads=2, pre_norm=not marian)
    size = len(vocabulary)
    spec.encoder.embeddings[0].weight = weights(size, D_MODEL)
    spec.decoder.embeddings.weight = weights(size, D_MODEL)
    linear(spec.decoder.projection, size, D_MODEL)
    for stack in (spec.encoder, spec.decoder):
        if hasattr(stack, "layer_norm"):
            norm(stack.layer_norm)
    for layer in spec.encoder.layer:
        attention(layer.self_attention, self_attention=True)
        ffn(layer.ffn)
    for layer in spec.decoder.layer:
        attention(layer.self_attention, self_attention=True)
        attention(layer.attention, self_attention=False)
        ffn(layer.ffn)
    if marian:
        spec.decoder.start_from_zero_embedding = True
    spec.config.decoder_start_token = "</s>"
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    spec.validate()
    spec.optimize(quantization="float32")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))


def build_nllb_like(out_dir: Path, spm: bytes, flores_codes: Sequence[str], seed: int = 0) -> Path:
    """A random-weight model in the NLLB-200 layout (FLORES-200 tokens in the vocabulary,
    ``sentencepiece.bpe.model``) that the server loads like a real NLLB conversion."""
    save_random_transformer(out_dir, make_vocabulary(spm_pieces(spm), flores_codes), seed=seed)
    (out_dir / "sentencepiece.bpe.model").write_bytes(spm)
    return out_dir


# --- the benchmark

SENTENCES = [
    "Good morning.",
    "Can you hear me now?",
    "The meeting starts in ten minutes.",
    "Please send me the report before Friday.",
    "I think we should try a different approach to this problem.",
    "The weather is nice today, so we could have lunch outside.",
    "Our team finished the first version of the product last week.",
    "Could you repeat the last part of the question, please?",
    "The train to the airport leaves every twenty minutes from platform four.",
    "We need more time to test the new features before we release them to all customers.",
    "Thank you all for joining, and see you next week.",
    "The budget for the next quarter has not been approved yet, but we expect an answer by Monday.",
    "Let me share my screen.",
    "My flight was delayed by two hours because of the storm.",
    "When the children came home from school, they were hungry and tired.",
    "If the numbers are right, sales grew by fifteen percent compared to last year.",
]


class _NoCache:
    """The server's cache, turned off: every text reaches the model."""

    async def get(self, key: str) -> str | None:
        return None

    async def put(self, key: str, value: str) -> None:
        return None


@dataclass
class _Recorder:
    """Sits in front of the engine's ``ctranslate2.Translator`` and records every call."""

    inner: Any
    calls: list[tuple[list[list[str]], dict[str, Any]]] = field(default_factory=list)

    def translate_batch(self, source: list[list[str]], **options: Any) -> Any:
        self.calls.append((source, options))
        return self.inner.translate_batch(source, **options)


@dataclass(frozen=True)
class MtCall:
    source: str
    target: str
    texts: list[str]
    outputs: list[str]


@dataclass
class RecordingEngine:
    """A ``TranslationEngine`` that runs a real one and records every ``translate_batch`` call.

    The benchmark replays the recorded batches. Calls arrive on the batcher's thread, hence the lock.
    """

    engine: TranslationEngine
    calls: list[MtCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.engine.name

    def source_languages(self) -> frozenset[str]:
        return self.engine.source_languages()

    def target_languages(self) -> frozenset[str]:
        return self.engine.target_languages()

    def supports(self, source: str | None, target: str) -> bool:
        return self.engine.supports(source, target)

    def translate_batch(
        self,
        texts: Sequence[str],
        source: str,
        target: str,
        beam_size: int = 1,
        max_decoding_length: int = 256,
    ) -> list[str]:
        outputs = self.engine.translate_batch(texts, source, target, beam_size, max_decoding_length)
        with self._lock:
            self.calls.append(MtCall(source, target, list(texts), outputs))
        return outputs


@dataclass
class PathResult:
    path: str
    sessions: int
    sentences: int
    seconds: float
    batches: int
    latencies: list[float] = field(default_factory=list, repr=False)
    model_s: float = 0.0  # time inside the engine's translate_batch

    @property
    def model_busy(self) -> float:
        return self.model_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_s(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latencies")
        d["sentences_per_s"] = round(self.per_s, 1)
        d["mean_batch"] = round(self.sentences / self.batches, 2) if self.batches else 0.0
        d["p50_ms"] = round(_pct(self.latencies, 50) * 1000, 2)
        d["p95_ms"] = round(_pct(self.latencies, 95) * 1000, 2)
        d["seconds"] = round(self.seconds, 4)
        d["model_s"] = round(self.model_s, 4)
        d["model_busy"] = round(self.model_busy, 3)
        return d


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def _server_path(
    engine: TranslationEngine, settings: Settings, sessions: int, per_session: int, source: str, target: str
) -> PathResult:
    model_seconds: list[float] = []
    service = build_translation(
        settings, engine, Metrics(), lambda stats: model_seconds.append(stats.seconds)
    )
    service.cache = _NoCache()
    latencies: list[float] = []

    async def session(index: int) -> None:
        for j in range(per_session):
            text = SENTENCES[(index * 5 + j) % len(SENTENCES)]
            start = time.perf_counter()
            await service.translate(f"bench-{index}", text, source, [target])
            latencies.append(time.perf_counter() - start)

    async with service.batcher:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for i in range(sessions):
                group.create_task(session(i))
        seconds = time.perf_counter() - start
        await asyncio.sleep(0)  # the last batch's stats arrive by call_soon_threadsafe
    return PathResult("server", sessions, len(latencies), seconds, 0, latencies, sum(model_seconds))


def _replay(
    name: str, sessions: int, sizes: list[int], run: Callable[[int], object], times: int = 3
) -> PathResult:
    """Time ``run(i)`` for every recorded batch ``i`` (the median of ``times`` calls, so a moment of
    contention on a shared machine does not count); each sentence's latency is its call's."""
    latencies: list[float] = []
    total = 0.0
    for i, size in enumerate(sizes):
        durations = []
        for _ in range(times):
            start = time.perf_counter()
            run(i)
            durations.append(time.perf_counter() - start)
        elapsed = sorted(durations)[times // 2]
        total += elapsed
        latencies += [elapsed] * size
    return PathResult(name, sessions, sum(sizes), total, len(sizes), latencies, total)


def bench_once(
    engine: CT2Translator, settings: Settings, sessions: int, per_session: int, source: str, target: str
) -> list[PathResult]:
    """One N: the server path, then the engine and bare CTranslate2 replays of its exact batches."""
    # The same model behind a recorder in CTranslate2's place, to see what the engine sends it.
    recorder = _Recorder(engine.translator)
    texts = RecordingEngine(CT2Translator(engine.path, family=engine.family, translator=recorder))
    server = asyncio.run(_server_path(texts, settings, sessions, per_session, source, target))
    batches = [call.texts for call in texts.calls]
    sizes = [len(batch) for batch in batches]
    server.batches = len(sizes)
    via_engine = _replay(
        "engine", sessions, sizes, lambda i: engine.translate_batch(batches[i], source, target)
    )
    direct = _replay(
        "direct",
        sessions,
        [len(tokens) for tokens, _ in recorder.calls],
        lambda i: recorder.inner.translate_batch(recorder.calls[i][0], **recorder.calls[i][1]),
    )
    return [server, via_engine, direct]


def markdown(results: list[PathResult], header: str) -> str:
    rows = [
        header,
        "",
        "| sessions | path | model calls | mean batch | sentences/s | p50 ms | p95 ms | overhead "
        "| model busy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "server": "server (TranslationService + MicroBatcher)",
        "engine": "engine (CT2Translator, incl. SentencePiece)",
        "direct": "direct (ctranslate2.Translator.translate_batch)",
    }
    direct = {r.sessions: r.per_s for r in results if r.path == "direct"}
    for r in results:
        s = r.summary()
        overhead = direct[r.sessions] / r.per_s if r.per_s else float("inf")
        rows.append(
            f"| {r.sessions} | {labels[r.path]} | {r.batches} | {s['mean_batch']:.1f} | "
            f"{s['sentences_per_s']:,.0f} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {overhead:.2f}x | "
            f"{r.model_busy:.0%} |"
        )
    return "\n".join(rows)


def run_bench_mt(args: argparse.Namespace) -> int:
    from streamer_bench.bench import machine

    counts = [int(x) for x in args.sessions.split(",") if x.strip()]
    settings = Settings(device=args.device, batch_wait_ms=args.batch_wait_ms)
    with tempfile.TemporaryDirectory(prefix="streamer-bench-mt-") as tmp:
        if args.model:
            model_dir, what = Path(args.model), f"model `{Path(args.model).name}`"
        else:
            words = sorted({w for s in SENTENCES for w in s.split()})
            model_dir = build_nllb_like(
                Path(tmp) / "synthetic-nllb-tiny",
                train_spm(words, seed=1),
                ["eng_Latn", "spa_Latn", "deu_Latn"],
            )
            what = "the synthetic model (1 layer, d_model 16, random weights: server overhead, not MT speed)"
        engine = load_mt_engine(settings.replace(mt_model=str(model_dir)))
        assert isinstance(engine, CT2Translator)
        if not engine.supports(args.source, args.target):
            pair = f"{args.source} -> {args.target}"
            raise UnsupportedLanguageError(f"{model_dir.name} cannot translate {pair}")
        engine.translate_batch(SENTENCES, args.source, args.target)  # warm-up: first-call allocations
        load_before = os.getloadavg()[0]
        results: list[PathResult] = []
        for n in counts:
            runs = [
                bench_once(engine, settings, n, args.per_session, args.source, args.target)
                for _ in range(args.repeat)
            ]
            # the run with the median server throughput, with the replays of its own batches
            runs.sort(key=lambda rs: rs[0].per_s)
            for r in runs[len(runs) // 2]:
                results.append(r)
                print(json.dumps(r.summary()), flush=True)
        load_after = os.getloadavg()[0]
    header = (
        f"### Translation: server path vs. bare CTranslate2 ({args.source}->{args.target})\n\n"
        f"{what}; {settings.device}, intra_threads=1 (as the server loads it); batch wait "
        f"{args.batch_wait_ms} ms, max batch 32; {args.per_session} sentences per session, each awaited "
        f"before the next; cache off; the run with the median server throughput of {args.repeat}, "
        f"each replayed batch timed as the median of 3 calls. Machine: {machine()}; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after."
    )
    table = markdown(results, header)
    print(table)
    if args.out:
        report = {"header": header, "runs": [r.summary() for r in results]}
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0
