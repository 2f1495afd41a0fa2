#!/usr/bin/env python3
"""Speed of ``buddyscope.model.ftrace.parse_lines`` in lines per second.

    python tests/bench/ftrace_parse.py [--lines 200000] [--runs 5]

The input is the event lines of the committed real traces
(``fixtures/ftrace/*/*.txt``: the four lab kernels and trace-cmd report),
repeated in file order until it has ``--lines`` lines, plus each file's
comment header once per repeat. It is built in memory first, so only
parsing is timed (the best of ``--runs`` runs, and the median). A second
measurement reads the same text from a file with ``parse_file``.
"""

import argparse
import statistics
import sys
import tempfile
import time
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
    args = p.parse_args()
    lines = build(args.lines)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        res = parse_lines(lines)
        times.append(time.perf_counter() - t0)
    n = len(lines)
    print(f"{n} lines ({len(res.events)} page events, {res.comments} comments, "
          f"{sum(res.unknown.values())} other events), {args.runs} runs, Python "
          f"{sys.version.split()[0]}")
    print(f"parse_lines: best {n / min(times):,.0f} lines/s, median "
          f"{n / statistics.median(times):,.0f} lines/s")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "trace"
        f.write_text("".join(lines))
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            parse_file(f)
            times.append(time.perf_counter() - t0)
    print(f"parse_file:  best {n / min(times):,.0f} lines/s, median "
          f"{n / statistics.median(times):,.0f} lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
