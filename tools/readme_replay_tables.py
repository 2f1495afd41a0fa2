"""Print the README's two replay tables from the committed recordings.

    python tools/readme_replay_tables.py

The first table is every recording but the pressure ones; the second is
the ``pressure-*`` recordings. Rerun after a model change and paste.
"""

from __future__ import annotations

import sys
from pathlib import Path

from buddyscope.model.load import load_recording
from buddyscope.model.replay import replay

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.2f} %" if d else "n/a"


def _reasons(rep) -> str:
    r = rep.get("miss_reasons") or {}
    return ", ".join(f"{n} {k}" for k, n in sorted(r.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def main() -> int:
    plain, pressure = [], []
    for path in sorted(RECORDINGS.glob("*.json.gz")):
        rec = load_recording(path)
        d = replay(rec.snapshot, rec.events,
                   events_enabled=rec.fixture.provenance.get("events_enabled")).to_dict()
        name = path.name[:-len(".json.gz")]
        a = d["allocations"]
        if "-pressure-" in name:
            pressure.append(f"| {name} | {a} | {_pct(d['hits'], a)} | {d['refills_exact']}/{d['refills']} "
                            f"| {d['drains_exact']}/{d['drains']} | {d['longest_miss_run']} | {_reasons(d)} |")
        else:
            plain.append(f"| {name} | {a} | {_pct(d['hits'], a)} | {_pct(d['naive_hits'], a)} "
                         f"| {d['refills_exact']}/{d['refills']} | {d['drains_exact']}/{d['drains']} "
                         f"| {d.get('bulk_calls', 0)} | {_reasons(d)} |")
    print("| fixture | allocations | model exact | naive | refill sets exact | drain sets exact | bulk calls | misses (reason) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(plain))
    print()
    print("| fixture | allocations | model exact | refill sets | free drain sets | longest miss run | misses (reason) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(pressure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
