"""A task migrated in the middle of a pcp free: ``free_unref_folios``'s
second loop (the ``mm_page_free_batched`` commits) and 7.2's chunked drain
in ``free_frozen_page_commit``.

Expectations are worked out by hand from Debian's ``linux-source-7.2``
7.2.13-1, ``mm/page_alloc.c``; states are built as in ``test_paths.py``,
with a second CPU. (No committed recording shows a migration there; the
held-out 7.2 4-vCPU pressure-anon trace does, lines 1016-1292: dd-786
frees a THP on cpu 3, its drain on cpu 3 stops after six chunks, and the
THP's batched commit and drain follow on cpu 0.)
"""

from __future__ import annotations

import dataclasses

from buddyscope.model.ftrace import parse_text
from buddyscope.model.replay import Replayer
from buddyscope.model.snapshot import Pcp

from test_paths import M, U, build_snapshot, drained, freed

# Seven MOVABLE order-0 pages on cpu 0's pcp, head first (the tail, the
# oldest, is drained first).
M7 = [0x1010, 0x1012, 0x1014, 0x1016, 0x1018, 0x101a, 0x101c]
F, G = 0x1020, 0x1030


def two_cpus(snap):
    """*snap* with a second CPU whose pcp is empty and set up like cpu 0's."""
    zone = snap.zones[0]
    p0 = zone.pcp[0]
    p1 = Pcp(cpu=1, count=0, high=p0.high, batch=p0.batch, fields=dict(p0.fields),
             lists=[[] for _ in p0.lists])
    snap.kernel.nr_cpus = 2
    zone.pcp.append(p1)
    return snap


def run(snap, *lines):
    """Replay (cpu, task, event text) lines in order; the Replayer after."""
    text = "".join(f"  {who} [{cpu:03d}] d..2. {ts}: {line}\n"
                   for ts, (cpu, who, line) in enumerate(lines, 1))
    r = Replayer(snap)
    r.run(parse_text(text).events)
    return r


def batched(pfn):
    return f"mm_page_free_batched: page=(____ptrval____) pfn={pfn:#x} order=0"


def test_a_batched_free_commits_on_the_cpu_of_its_batched_event():
    # free_unref_folios (L3001): the first loop traces mm_page_free
    # (__free_pages_prepare, L3013) with no lock held; the task can be
    # moved before the second loop, which commits to the pcp of the CPU
    # it runs on (pcp_spin_trylock(zone->per_cpu_pageset), L3064) after
    # trace_mm_page_free_batched (L3080).
    snap = two_cpus(build_snapshot("7.2", [M, U], batch=2, high=64))
    r = run(snap, (0, "rm-7", freed(F)), (1, "rm-7", batched(F)))
    a = r.alloc
    assert a.on_pcp[F][:2] == (0, 1)
    assert a.zones[0].pcp[0].count == 0 and a.zones[0].pcp[1].count == 1
    assert not r.report.contradictions


# 7.2 free_frozen_page_commit (L2832) of F on cpu 0, with batch 2,
# high_min = high_max = 8 and free_count 6: free_count becomes 7 (L2870),
# nr_pcp_high returns 8 (high_min == high_max), count 8 >= 8, nr_pcp_free
# (L2752) clamp(7, 2, 8 - 2) = 6 pages to free, in free_pcppages_bulk
# chunks of min(to_free, batch) = 2 from the freed page's list (L2885):
# M7[6], M7[5] | M7[4], M7[3] | M7[2], M7[1]. Between chunks the pcp
# lock is dropped; a task found on another CPU gives up (L2904-2908).
def cut_drain_state():
    return two_cpus(build_snapshot(
        "7.2", [M, U], pcp={(0, M): M7}, batch=2, high=8,
        pcp_fields={"high_min": 8, "high_max": 8, "free_count": 6}))


def test_a_drain_cut_at_a_chunk_when_the_task_moved_is_exact():
    r = run(cut_drain_state(), (0, "dd-9", freed(F)),
            *[(0, "dd-9", drained(p, M)) for p in (M7[6], M7[5], M7[4], M7[3])],
            (1, "dd-9", freed(G)))
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.migrated_drains) == (1, 1, 1)
    # What the kernel left is on the model's pcp.
    assert r.alloc.zones[0].pcp[0].count == 4


def test_the_whole_drain_needs_no_migration():
    r = run(cut_drain_state(), (0, "dd-9", freed(F)),
            *[(0, "dd-9", drained(p, M)) for p in reversed(M7[1:])])
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.migrated_drains) == (1, 1, 0)


def test_a_cut_drain_with_the_task_still_on_its_cpu_is_a_miss():
    # Two chunks, then the task's next event on the same CPU: nothing shows
    # why the kernel stopped (its trylock may have failed), so the model's
    # six pages are not what it sent back.
    r = run(cut_drain_state(), (0, "dd-9", freed(F)),
            *[(0, "dd-9", drained(p, M)) for p in (M7[6], M7[5], M7[4], M7[3])],
            (0, "dd-9", freed(G)))
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.migrated_drains) == (1, 0, 0)


def test_a_drain_cut_inside_a_chunk_is_a_miss_even_if_the_task_moved():
    # free_pcppages_bulk sends back a whole chunk under the zone lock
    # (L1459): a migration cannot stop it after three pages.
    r = run(cut_drain_state(), (0, "dd-9", freed(F)),
            *[(0, "dd-9", drained(p, M)) for p in (M7[6], M7[5], M7[4])],
            (1, "dd-9", freed(G)))
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.migrated_drains) == (1, 0, 0)


def test_streaming_replay_sees_both_migrations():
    # model/streaming.py's online passes pair a batched free by task and
    # mark a drain whose task moved, as the list passes do.
    from buddyscope.model.streaming import TraceSource, replay_stream
    lines = [(0, "rm-7", freed(G)), (1, "rm-7", batched(G)), (0, "dd-9", freed(F)),
             *[(0, "dd-9", drained(p, M)) for p in (M7[6], M7[5], M7[4], M7[3])],
             (1, "dd-9", freed(0x1040))]
    text = ["  %s [%03d] d..2. %d: %s" % (who, cpu, ts, line)
            for ts, (cpu, who, line) in enumerate(lines, 1)]
    whole = run(cut_drain_state(), *lines).report.to_dict()
    streamed = replay_stream(cut_drain_state(), TraceSource(lines=text)).to_dict()
    assert whole["migrated_drains"] == 1 and not whole["contradictions"]
    assert {k: v for k, v in streamed.items() if k != "seconds"} == \
        {k: v for k, v in whole.items() if k != "seconds"}
