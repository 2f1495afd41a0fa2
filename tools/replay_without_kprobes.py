"""Replay recordings whole, without the bulk kprobes, and without any kprobe.

    python tools/replay_without_kprobes.py              # every committed recording
    python tools/replay_without_kprobes.py F.json.gz ...  # these (e.g. held-out ones)

A user's own trace (trace-cmd, perf) has the kmem tracepoints but none of
the kprobe events ``record`` adds (the bulk allocator, kswapd's reclaim
window, vmstat's pcp->high decay, compaction's free page isolation,
watermark changes). Each recording is replayed three ways: as recorded,
without the bulk allocator's events, and without every kprobe event (their
names also left out of what the recording says it traced, as
``tests/model/test_miss_labels.py`` does). Issue 12's target for the last
two: misses other than ``bulk_allocator`` <= 0.05 % of allocations.

Prints a row per recording and way, then per-series totals.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

from buddyscope.model.events import (
    BULK_EVENTS, DECAY_EVENTS, ISOLATE_EVENTS, RECLAIM_EVENTS, VMSTAT_EVENTS, WATERMARK_EVENTS,
)
from buddyscope.model.load import load_recording
from buddyscope.model.replay import replay

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
KPROBE_EVENTS = (BULK_EVENTS + RECLAIM_EVENTS + DECAY_EVENTS + VMSTAT_EVENTS + ISOLATE_EVENTS
                 + WATERMARK_EVENTS)
WAYS = (("recorded", ()), ("no-bulk", BULK_EVENTS), ("no-kprobe", KPROBE_EVENTS))


def _replay(rec, drop):
    events = [e for e in rec.events if e.name not in drop]
    enabled = [n for n in rec.fixture.provenance.get("events_enabled") or () if n not in drop]
    return replay(rec.snapshot, events, events_enabled=enabled)


def _reasons(c: Counter) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def main(argv) -> int:
    paths = [Path(p) for p in argv] or sorted(RECORDINGS.glob("*.json.gz"))
    totals = defaultdict(lambda: [0, 0, 0, Counter(), 0])   # (series, way) -> allocs, hits, other, reasons, run
    print("| recording | way | allocations | exact | misses not bulk_allocator | longest run | misses (reason) |")
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        try:
            rec = load_recording(path)
        except Exception as exc:  # noqa: BLE001 - one clear line per bad file
            print(f"{path}: cannot load: {exc}", file=sys.stderr)
            return 1
        name = path.name[:-len(".json.gz")] if path.name.endswith(".json.gz") else path.name
        series = rec.fixture.provenance.get("kernel_series") or "?"
        for way, drop in WAYS:
            rep = _replay(rec, drop)
            reasons = Counter(r.reason for r in rep.misses())
            other = sum(n for k, n in reasons.items() if k != "bulk_allocator")
            a = rep.allocations
            t = totals[(series, way)]
            t[0] += a; t[1] += rep.hits; t[2] += other; t[3].update(reasons)
            t[4] = max(t[4], rep.longest_miss_run)
            print(f"| {name} | {way} | {a} | {100.0 * rep.hits / a if a else 100:.2f} % "
                  f"| {other} ({100.0 * other / a if a else 0:.3f} %) | {rep.longest_miss_run} | {_reasons(reasons)} |")
    print()
    print("| series | way | allocations | exact | misses not bulk_allocator | longest run | misses (reason) |")
    print("|---|---|---|---|---|---|---|")
    for (series, way), (a, h, other, reasons, run) in sorted(totals.items()):
        print(f"| {series} | {way} | {a} | {100.0 * h / a if a else 100:.2f} % "
              f"| {other} ({100.0 * other / a if a else 0:.3f} %) | {run} | {_reasons(reasons)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
