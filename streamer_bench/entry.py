"""``streamer bench``'s entry: parse the options, then the sweep, the soak or the idle measurement.

Apart from :mod:`streamer_bench.bench` so that the idle measurement (which builds on the sweep's pieces)
is imported by the entry alone, not by the sweep it builds on.
"""

from __future__ import annotations

import argparse
import sys

from streamer_bench.bench import load_source, parse_options, run_soak, run_sweep
from streamer_bench.idle import run_idle
from streamer_bench.script import InputError
from streamer_bench.server import ServerError


def run_bench(args: argparse.Namespace) -> int:
    """``streamer bench``: the sweep (or ``--soak``, or ``--idle``); 2 on bad options or missing input."""
    try:
        opts = parse_options(args)
        source = load_source(args)
        if opts.idle:
            return run_idle(opts, source)
        if opts.soak:
            return run_soak(opts, source)
        return run_sweep(opts, source)
    except InputError as e:
        print(f"streamer bench: {e}", file=sys.stderr)
        return 2
    except ServerError as e:  # idle and soak: one server, nothing measured without it
        print(f"streamer bench: {e}", file=sys.stderr)
        return 1
