#!/usr/bin/env python3
"""How far one lost trace line throws replay: drop single events one at a time
from committed recordings and print the longest run of misses each loss causes.

    python tools/lost_lines.py 7.2-1cpu-fork-exec 7.2-2cpu-fork-exec \
        --events mm_page_free,mm_page_free_batched --samples 100 --seed 7

Each sample replays the whole recording without one randomly chosen event of
the named kinds (``--seed`` makes the choice repeatable); the histogram is of
the report's ``longest_miss_run``, and every loss that leads to a run longer
than ``--max-run`` is printed with its new misses.
"""

import argparse
import random
import sys
from pathlib import Path

from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import replay

RECORDINGS = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+", help="recording names (fixtures/recordings/NAME.json.gz)")
    ap.add_argument("--events", default="mm_page_free,mm_page_free_batched",
                    help="comma-separated event names to drop (default: %(default)s)")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-run", type=int, default=2)
    a = ap.parse_args()
    kinds = set(a.events.split(","))
    worst = 0
    for name in a.names:
        path = RECORDINGS / f"{name}.json.gz"
        if not path.exists():
            print(f"lost_lines: no recording {path}", file=sys.stderr)
            return 2
        fx = Fixture.load(path)
        events = parse_lines(fx.trace).events
        enabled = fx.provenance.get("events_enabled")
        before = {r.lineno for r in replay(fx.snapshot, events, events_enabled=enabled).misses()}
        candidates = [e for e in events if e.name in kinds]
        hist: dict = {}
        added = 0
        for lost in random.Random(a.seed).sample(candidates, min(a.samples, len(candidates))):
            rep = replay(fx.snapshot, [e for e in events if e is not lost], events_enabled=enabled)
            new = [r for r in rep.misses() if r.lineno not in before]
            added += len(new)
            run = rep.longest_miss_run
            hist[run] = hist.get(run, 0) + 1
            worst = max(worst, run)
            if run > a.max_run:
                print(f"  {name}: without line {lost.lineno} ({lost.name} {lost.pfn:#x}): run {run}: "
                      + ", ".join(f"line {r.lineno} {r.reason}" for r in new), flush=True)
        print(f"{name}: {min(a.samples, len(candidates))} {'/'.join(sorted(kinds))} lost one at a time, "
              f"{added} misses added, longest run: {sorted(hist.items())}", flush=True)
    return 1 if worst > a.max_run else 0


if __name__ == "__main__":
    sys.exit(main())
