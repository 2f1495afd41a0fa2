#!/usr/bin/env python3
"""Replay speed on one core: parsing and model stepping, measured apart.

    python tests/bench/replay_speed.py [--runs 3] [--pattern '*']

For every committed fixture (``fixtures/recordings/*.json.gz``) the trace
lines are parsed (``parse_lines``) and, separately, the parsed events are
stepped through the model (``replay``: prediction, scoring and the real
outcome applied, for every event). Loading the snapshot into the model is
timed on its own. Each figure is the best of ``--runs``; the totals are
events per second over all fixtures, side by side in one run.
"""

import argparse
import sys
import time
from pathlib import Path

from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import replay

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"


#: perf_counter (wall) or process_time (CPU: on a shared machine, what
#: this process got, without the time it waited for a core).
CLOCK = time.perf_counter


def best(fn, runs):
    t = float("inf")
    out = None
    for _ in range(runs):
        t0 = CLOCK()
        out = fn()
        t = min(t, CLOCK() - t0)
    return t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by CPU time, not wall time (for a shared machine)")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    total_events = total_parse = total_step = total_load = 0.0
    print(f"{'fixture':34} {'events':>7} {'parse ev/s':>11} {'load s':>7} {'step ev/s':>10}")
    for path in sorted(FIXTURES.glob(f"{args.pattern}.json.gz")):
        fx = Fixture.load(path)
        tp, parsed = best(lambda: parse_lines(fx.trace), args.runs)
        events = parsed.events
        tl, _ = best(lambda: Allocator(fx.snapshot), args.runs)
        tr, rep = best(lambda: replay(fx.snapshot, events), args.runs)
        ts = max(tr - tl, 1e-9)   # replay() builds the model too
        n = len(events)
        total_events += n
        total_parse += tp
        total_step += ts
        total_load += tl
        print(f"{path.name:34} {n:7} {n / tp:11,.0f} {tl:7.3f} {n / ts:10,.0f}")
    print(f"\n{int(total_events)} events, {'CPU' if args.cpu_time else 'wall'} time: parsing {total_events / total_parse:,.0f} events/s, "
          f"model stepping {total_events / total_step:,.0f} events/s "
          f"(parsing is {total_step / total_parse:.1f}x as fast as stepping); "
          f"loading {total_load:.2f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
