"""Which CPU a number was measured on: its model, its vector extensions, and what CTranslate2 makes of it.

Two CPUs both called "2 cores" differ by a factor in what the model does per second: an Intel Xeon with
AVX-512 and MKL, an AMD EPYC where CTranslate2 dispatches to AVX2 kernels and oneDNN GEMMs. So every
report carries the model name from ``/proc/cpuinfo``, the vector extensions the kernel lists in its
flags, summarised (``AVX2, AVX-512 (F, BW, VNNI), AVX-VNNI``), and CTranslate2's own view: the compute
types it supports and, read from its log while it loads the model, the ISA it selected and its GEMM
backends (``CT2_FORCE_CPU_ISA`` overrides the selection and is recorded when set).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from streamer.errors import StreamerError
from streamer.pipeline.models import resolve_asr_model

# /proc/cpuinfo flag -> the name it has in a summary, grouped by family
_AVX512 = {
    "avx512f": "F",
    "avx512cd": "CD",
    "avx512bw": "BW",
    "avx512dq": "DQ",
    "avx512vl": "VL",
    "avx512_vnni": "VNNI",
    "avx512_bf16": "BF16",
    "avx512_fp16": "FP16",
}
_AMX = {"amx_tile": "TILE", "amx_int8": "INT8", "amx_bf16": "BF16", "amx_fp16": "FP16"}
_PLAIN = {"sse4_2": "SSE4.2", "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "avx_vnni": "AVX-VNNI"}
VECTOR_FLAGS = frozenset({*_AVX512, *_AMX, *_PLAIN})

# what CTranslate2 logs (CT2_VERBOSE=1) when it first initialises the CPU backend
_CT2_LOG = {
    "isa": re.compile(r"Selected ISA: (\S+)"),
    "mkl": re.compile(r"Use Intel MKL: (\S+)"),
    "sgemm": re.compile(r"SGEMM backend: (.+)$"),
    "gemm_s8": re.compile(r"GEMM_S8 backend: (.+)$"),
    "compute_type": re.compile(r"Selected compute type: (\S+)"),
}
_LOAD_MODEL = """
import sys, ctranslate2
ctranslate2.models.Whisper(sys.argv[1], device="cpu", compute_type="int8", intra_threads=1)
"""


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The first processor's model name and flags in ``/proc/cpuinfo`` text ("" and none if absent)."""
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def vector_extensions(flags: frozenset[str]) -> str:
    """A one-line summary: ``"AVX2, FMA, AVX-512 (F, BW, VNNI), AVX-VNNI, AMX (TILE, INT8)"``.

    AVX-512 lists F, BW and VNNI (what int8 GEMM kernels need) and the other subsets present; SSE4.2 and
    AVX are named only when AVX2 is missing, since every AVX2 CPU has them.
    """
    parts = [_PLAIN[f] for f in ("avx2", "fma") if f in flags]
    if "avx2" not in flags:
        parts = [_PLAIN[f] for f in ("sse4_2", "avx") if f in flags] + parts
    sub = [name for flag, name in _AVX512.items() if flag in flags]
    if sub:
        parts.append(f"AVX-512 ({', '.join(sub)})")
    if "avx_vnni" in flags:
        parts.append("AVX-VNNI")
    amx = [name for flag, name in _AMX.items() if flag in flags]
    if amx:
        parts.append(f"AMX ({', '.join(amx)})")
    return ", ".join(parts) or "none listed"


def parse_ct2_log(text: str) -> dict[str, str]:
    """What CTranslate2's info log says about the CPU backend it chose (keys of :data:`_CT2_LOG`)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        for key, pattern in _CT2_LOG.items():
            m = pattern.search(line)
            if m and key not in out:
                out[key] = m.group(1).strip()
    return out


def ct2_view(model_dir: Path | None) -> dict[str, Any]:
    """CTranslate2's compute types on CPU, and the ISA and GEMM backends it selects loading ``model_dir``.

    The model is loaded in a child process with ``CT2_VERBOSE=1`` (CTranslate2 logs its CPU dispatch once
    per process, on first use); without a model the selection is not known and is left out.
    """
    try:
        import ctranslate2
    except ModuleNotFoundError:
        return {"error": "ctranslate2 is not installed"}
    view: dict[str, Any] = {
        "version": ctranslate2.__version__,
        "compute_types": sorted(ctranslate2.get_supported_compute_types("cpu")),
        "forced_isa": os.environ.get("CT2_FORCE_CPU_ISA"),
    }
    if model_dir is None:
        return view
    env = {**os.environ, "CT2_VERBOSE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_MODEL, str(model_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {**view, "error": f"could not load the model to read CTranslate2's dispatch: {e}"}
    found = parse_ct2_log(done.stderr)
    if done.returncode != 0 or "isa" not in found:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {**view, "error": f"CTranslate2 did not say its ISA: {tail[0][:200]}"}
    return {**view, **found}


def model_dir(name: str) -> Path | None:
    """The ASR model's directory, for CTranslate2's view of the CPU; None when it cannot be had here."""
    try:
        return resolve_asr_model(name)
    except (StreamerError, OSError, ValueError):
        return None


def cpu_info(model_dir: Path | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU as the bench JSON records it: model, cores, vector extensions, CTranslate2's view."""
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, flags = "", frozenset()
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "vector_extensions": vector_extensions(flags),
        "vector_flags": sorted(flags & VECTOR_FLAGS),
        "ctranslate2": ct2_view(model_dir),
    }


def cpu_kind(info: dict[str, Any]) -> str:
    """``"AMD EPYC (AVX2, FMA, AVX-512 (F, BW, VNNI); CTranslate2 ISA AVX2)"``: what tables are headed by."""
    ct2 = info.get("ctranslate2") or {}
    isa = f"; CTranslate2 ISA {ct2['isa']}" if ct2.get("isa") else ""
    return f"{info['model']} ({info['vector_extensions']}{isa})"
