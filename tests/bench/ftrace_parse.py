#!/usr/bin/env python3
"""Speed of ``buddyscope.model.ftrace.parse_lines`` in lines per second,
beside the line by line parser it replaced (``parse_lines_reference``).

    python tests/bench/ftrace_parse.py [--lines 200000] [--runs 5] [--cpu-time]

The input is the event lines of the committed real traces
(``fixtures/ftrace/*/*.txt``: the four lab kernels and trace-cmd report),
repeated in file order until it has ``--lines`` lines, plus each file's
comment header once per repeat. It is built in memory first, so only
parsing is timed; the two parsers run in turn, ``--runs`` times each (the
best of them, and the median). A second measurement reads the same text
from a file with ``parse_file`` (the reference: the same file, line by
line). The memory the parsed events hold is measured apart (tracemalloc,
one run). On a shared machine, ``--cpu-time`` times by CPU time, not wall
time.
"""

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from buddyscope.model.ftrace import (
    _bounded_lines, parse_file, parse_lines, parse_lines_reference,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ftrace"


def build(n: int) -> list[str]:
    source: list[str] = []
    for path in sorted(FIXTURES.glob("*/*.txt")):
        source += path.read_text().splitlines(keepends=True)
    lines: list[str] = []
    while len(lines) < n:
        lines += source[: n - len(lines)]
    return lines


def parse_file_reference(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_lines_reference(_bounded_lines(f))


def timed(clock, runs, cases):
    """Run each of *cases* (name -> thunk) in turn, *runs* times."""
    times = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


def line(n, name, ts, base=None):
    best, median = n / min(ts), n / statistics.median(ts)
    ratio = "" if base is None else f"  x{min(base) / min(ts):.2f} (best), x{statistics.median(base) / statistics.median(ts):.2f} (median)"
    return f"{name:31} best {best:>11,.0f} lines/s, median {median:>11,.0f} lines/s{ratio}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu-time", action="store_true", help="time by CPU time, not wall time")
    args = p.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    lines = build(args.lines)
    n = len(lines)
    res = parse_lines(lines)
    print(f"{n} lines ({len(res.events)} page events, {res.comments} comments, "
          f"{sum(res.unknown.values())} other events), {args.runs} runs each, Python "
          f"{sys.version.split()[0]}, {'CPU' if args.cpu_time else 'wall'} time")
    del res
    t = timed(clock, args.runs, {"old": lambda: parse_lines_reference(lines),
                                 "new": lambda: parse_lines(lines)})
    print(line(n, "parse_lines_reference (old)", t["old"]))
    print(line(n, "parse_lines (new)", t["new"], t["old"]))
    gc.collect()
    tracemalloc.start()
    res = parse_lines(lines)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"parse_lines: the parsed trace holds {held / len(res.events):,.0f} bytes per page event")
    del res
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "trace"
        f.write_text("".join(lines))
        t = timed(clock, args.runs, {"old": lambda: parse_file_reference(f),
                                     "new": lambda: parse_file(f)})
    print(line(n, "parse_file, line by line (old)", t["old"]))
    print(line(n, "parse_file (new)", t["new"], t["old"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
