"""Streaming replay (model/streaming.py) against the replay of the whole
event list, on every committed recording: the same report, record for
record, with the trace parsed a few lines at a time so that chunk ends fall
everywhere; and with only some records kept, the same counts and misses."""

import gzip
from pathlib import Path

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.stream import (
    alloc_takes, contig_free_runs, deferred_frees, drains_then_migrated,
    frees_maybe_under_pcp_lock,
    frees_under_pcp_lock,
)
from buddyscope.model.allocator import Allocator
from buddyscope.model.streaming import (
    TraceSource, _contig_and_locked, _maybe_locked, _pass1, replay_stream,
)

import recorded

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
ALL = sorted(p.name for p in RECORDINGS.glob("*.json.gz"))


def _load(name):
    fx = recorded.fixture(name)   # once per run, shared (tests/recorded.py): read only
    return fx, fx.provenance.get("events_enabled")


def _whole(name):
    """``replay`` of the whole event list, told what the recording traced
    (computed once per run)."""
    return recorded.replayed(name, enabled=True).to_dict()


@pytest.mark.parametrize("name", ALL)
def test_stream_replay_is_the_list_replay(name):
    fx, enabled = _load(name)
    whole = _whole(name)
    # chunk=7: parse pieces of 7 lines, so piece ends fall inside every
    # batched free, contiguous run and take of the trace.
    streamed = replay_stream(fx.snapshot, TraceSource(lines=fx.trace, chunk=7),
                             events_enabled=enabled).to_dict()
    assert streamed == whole


# Recordings with misses when this was written (5.10 1 of 4348, 7.2 3 of 3086, 2 of 4470).
@pytest.mark.parametrize("name", ["5.10-1cpu-pressure-tmpfs.json.gz", "7.2-1cpu-fork-exec.json.gz",
                                  "7.2-1cpu-pressure-tmpfs.json.gz"])
def test_stream_keeping_some_records(name):
    """--records 3: the counts, the longest miss run and the misses of the
    full report, and its last 3 records."""
    fx, enabled = _load(name)
    whole = _whole(name)
    kept = replay_stream(fx.snapshot, TraceSource(lines=fx.trace, chunk=64),
                         events_enabled=enabled, records=3).to_dict()
    assert {k: v for k, v in kept.items() if k != "records"} == \
        {k: v for k, v in whole.items() if k != "records"}
    misses = [r for r in whole["records"] if not r["hit"]]
    assert [r for r in kept["records"] if not r["hit"]] == misses
    assert kept["records"][-3:] == whole["records"][-3:]
    assert len(kept["records"]) <= len(misses) + 3


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith(("7.2", "6.12", "6.1-4cpu"))][:6])
def test_online_passes_are_the_list_passes(name):
    """Each online pass finds what its list pass in model/stream.py finds."""
    fx, _ = _load(name)
    events = recorded.events(name)
    a = Allocator(fx.snapshot)
    deferred, batched_order = deferred_frees(events)
    p1 = _pass1(events, a.profile.zone_locked_in_rmqueue)
    assert {i for i in range(len(events)) if i in p1.deferred} == deferred
    assert p1.batched_order == {i: o for i, o in batched_order.items() if o}
    assert p1.takes == alloc_takes(events, a.profile.zone_locked_in_rmqueue)
    assert {i for i in range(len(events)) if i in p1.migrated} == drains_then_migrated(events)
    contig = contig_free_runs(events, deferred, a.nr_orders - 1)
    locked = frees_under_pcp_lock(events, deferred, a.zone_of)
    c, lk = _contig_and_locked(events, p1.deferred, a.nr_orders - 1, a.zone_of)
    assert {i: c[i] for i in range(len(events)) if i in c} == contig
    assert {i for i in range(len(events)) if i in lk} == locked
    maybe = frees_maybe_under_pcp_lock(events, deferred, locked, a.zone_of,
                                       {o for o, _ in a.pindex})
    m = _maybe_locked(events, p1.deferred, lk, a.zone_of, {o for o, _ in a.pindex})
    assert {i for i in range(len(events)) if i in m} == maybe


def test_stream_of_a_gzip_ftrace_file(tmp_path):
    """An ftrace text file (gzip'd) streams like the fixture's lines."""
    name = "6.1-2cpu-fork-exec.json.gz"
    fx, enabled = _load(name)
    path = tmp_path / "trace.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in fx.trace)
    whole = _whole(name)
    assert replay_stream(fx.snapshot, TraceSource(path, chunk=5),
                         events_enabled=enabled).to_dict() == whole


def test_stream_refuses_a_trace_with_no_events(tmp_path):
    fx, _ = _load("6.1-2cpu-fork-exec.json.gz")
    path = tmp_path / "empty"
    path.write_text("# tracer: nop\n\n")
    with pytest.raises(BuddyscopeError, match="no kmem page events"):
        replay_stream(fx.snapshot, TraceSource(path))


def test_cli_replay_stream_prints_the_same_json():
    """``replay --stream --json`` prints what ``replay --json`` prints;
    ``--records -1`` is one line on stderr."""
    import json
    import subprocess
    import sys

    path = str(RECORDINGS / "7.2-1cpu-fork-exec.json.gz")
    run = lambda *a: subprocess.run([sys.executable, "-m", "buddyscope", "replay", path, *a],  # noqa: E731
                                    capture_output=True, text=True, cwd="/")
    whole, streamed = run("--json"), run("--json", "--stream")
    assert whole.returncode == streamed.returncode == 0
    assert json.loads(streamed.stdout) == json.loads(whole.stdout)
    bad = run("--records", "-1")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
