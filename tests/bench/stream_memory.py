#!/usr/bin/env python3
"""Replay memory against trace length: the event list vs streaming.

    python tests/bench/stream_memory.py [FIXTURE ...] [--cuts 4] [--records 20]

Each fixture (default: the three longest committed recordings) is split into
its snapshot (a snapshot file) and its trace (a plain ftrace text file); the
trace is also cut to its first 1/cuts, 2/cuts, ... lines (real events, a
trace cut short). Each cut is replayed in a fresh process three ways, and
that process's peak RSS (``VmHWM``: ``ru_maxrss`` would carry the forking parent's) printed side by side:

- base: the snapshot loaded into a Replayer, no trace;
- list: ``parse_trace`` + ``Replayer.run`` (what ``replay --snapshot --trace`` does);
- stream: ``replay_stream`` with ``--records`` N kept (``replay --records N``).

The growth over base is what the trace costs; the ratio list/stream of
that growth is printed. Both replays' reports (without records and timing)
must agree, else the line says DIFFERENT.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"

CHILD = r"""
import json, sys
from pathlib import Path
from buddyscope.model.load import load_snapshot, parse_trace
from buddyscope.model.replay import Replayer
from buddyscope.model.streaming import TraceSource, replay_stream
mode, snap_path, trace_path, records, enabled = sys.argv[1:6]
enabled = json.loads(enabled)
snap = load_snapshot(Path(snap_path))
out = {}
if mode == "base":
    Replayer(snap, events_enabled=enabled)
elif mode == "list":
    ev = parse_trace(Path(trace_path), snap).events
    rep = Replayer(snap, events_enabled=enabled).run(ev)
    out = rep.to_dict(records=False)
else:
    rep = replay_stream(snap, TraceSource(Path(trace_path)), events_enabled=enabled,
                        records=int(records))
    out = rep.to_dict(records=False)
out["maxrss_kib"] = int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
print(json.dumps(out))
"""


def run(mode, snap, trace, records, enabled):
    p = subprocess.run([sys.executable, "-c", CHILD, mode, str(snap), str(trace), str(records),
                        json.dumps(enabled)], capture_output=True, text=True, cwd="/")
    if p.returncode:
        sys.exit(f"{mode} failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout)


def main() -> None:
    from buddyscope.model.fixture import Fixture

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fixtures", nargs="*", type=Path)
    ap.add_argument("--cuts", type=int, default=4)
    ap.add_argument("--records", type=int, default=20)
    args = ap.parse_args()
    paths = args.fixtures or sorted(FIXTURES.glob("*.json.gz"), key=lambda p: -p.stat().st_size)[:3]
    print(f"{'trace':34} {'lines':>8} {'events':>8} {'base MiB':>9} {'list MiB':>9} "
          f"{'stream MiB':>10} {'growth list/stream':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            fx = Fixture.load(path)
            enabled = fx.provenance.get("events_enabled")
            snap = Path(tmp) / "snap.json"
            fx.snapshot.save(snap)
            lines = [ln if ln.endswith("\n") else ln + "\n" for ln in fx.trace]
            for k in range(1, args.cuts + 1):
                n = len(lines) * k // args.cuts
                trace = Path(tmp) / "trace"
                trace.write_text("".join(lines[:n]))
                base = run("base", snap, trace, args.records, enabled)
                lst = run("list", snap, trace, args.records, enabled)
                st = run("stream", snap, trace, args.records, enabled)
                same = ({k: v for k, v in lst.items() if k != "maxrss_kib"}
                        == {k: v for k, v in st.items() if k != "maxrss_kib"})
                b, l, s = (x["maxrss_kib"] / 1024 for x in (base, lst, st))
                ratio = (l - b) / (s - b) if s - b > 0.5 else float("inf")
                print(f"{path.name[:28] + f' {k}/{args.cuts}':34} {n:8} {lst['events']:8} {b:9.1f} "
                      f"{l:9.1f} {s:10.1f} {ratio:19.1f}{'' if same else '  DIFFERENT'}",
                      flush=True)
                os.unlink(trace)


if __name__ == "__main__":
    main()
