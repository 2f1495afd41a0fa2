#!/usr/bin/env python3
"""Speed of ``buddyscope.model.ftrace.parse_lines`` in lines per second.

    python tests/bench/ftrace_parse.py [--lines 200000] [--runs 5]

The input is the event lines of the committed real traces
(``fixtures/ftrace/*/*.txt``: the four lab kernels and trace-cmd report),
repeated in file order until it has ``--lines`` lines, plus each file's
comment header once per repeat. It is built in memory first, so only
parsing is timed (the best of ``--runs`` runs, and the median). A second
measurement reads the same text from a file with ``parse_file``. The
memory the parsed events hold is measured apart (tracemalloc, one run).
On a shared machine, ``--cpu-time`` times by CPU time, not wall time.
"""

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from buddyscope.model.ftrace import parse_file, parse_lines

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ftrace"


def build(n: int) -> list[str]:
    source: list[str] = []
    for path in sorted(FIXTURES.glob("*/*.txt")):
        source += path.read_text().splitlines(keepends=True)
    lines: list[str] = []
    while len(lines) < n:
        lines += source[: n - len(lines)]
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu-time", action="store_true", help="time by CPU time, not wall time")
    args = p.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    lines = build(args.lines)
    times = []
    for _ in range(args.runs):
        t0 = clock()
        res = parse_lines(lines)
        times.append(clock() - t0)
    n = len(lines)
    print(f"{n} lines ({len(res.events)} page events, {res.comments} comments, "
          f"{sum(res.unknown.values())} other events), {args.runs} runs, Python "
          f"{sys.version.split()[0]}")
    print(f"parse_lines: best {n / min(times):,.0f} lines/s, median "
          f"{n / statistics.median(times):,.0f} lines/s ({'CPU' if args.cpu_time else 'wall'} time)")
    del res
    gc.collect()
    tracemalloc.start()
    res = parse_lines(lines)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"parse_lines: the parsed trace holds {held / len(res.events):,.0f} bytes per page event")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "trace"
        f.write_text("".join(lines))
        times = []
        for _ in range(args.runs):
            t0 = clock()
            parse_file(f)
            times.append(clock() - t0)
    print(f"parse_file:  best {n / min(times):,.0f} lines/s, median "
          f"{n / statistics.median(times):,.0f} lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
