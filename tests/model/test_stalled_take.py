"""An allocation happens at its take, not at its ``mm_page_alloc``.

A block leaves the buddy lists under ``zone->lock``, where
``mm_page_alloc_zone_locked`` is traced (``__rmqueue_smallest``, 6.1
mm/page_alloc.c L2605; 5.10 L2875 and ``rmqueue`` L3465); ``mm_page_alloc``
is traced only when ``__alloc_pages`` returns (6.1 L5680, 5.10 L5057). A
CPU that stalls in between (a vCPU the host does not run) or a task
preempted there traces it after other CPUs' or tasks' events that came
after the take. Replay predicts such an allocation before the first of
them.
Checked on committed real recordings."""

from pathlib import Path

import pytest

from buddyscope.model.events import MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import Replayer
from buddyscope.model.stream import alloc_takes

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"


def _load(name):
    fx = Fixture.load(RECORDINGS / f"{name}.json.gz")
    return fx, parse_lines(fx.trace).events


def _replay(fx, events):
    r = Replayer(fx.snapshot, events_enabled=fx.provenance.get("events_enabled"))
    return r, r.run(events)


def allocs_after_takes(fx, events):
    """Take event index -> its mm_page_alloc's index, as replay finds them."""
    strict_mt = Replayer(fx.snapshot).alloc.profile.zone_locked_in_rmqueue
    return alloc_takes(events, strict_mt)


def _by_line(events, lineno):
    return next(i for i, e in enumerate(events) if e.lineno == lineno)


def test_refills_from_dma_on_two_cpus():
    # 6.1, 4 vCPUs, 2 GiB: DMA's pcp->batch is 1, so each order-0 MOVABLE
    # allocation served from DMA refills one page. CPU 2 takes 0x203 (line
    # 7711), CPU 3 then refills 0x2c5 and allocates it (7712, 7713), and
    # only then is CPU 2's mm_page_alloc of 0x203 traced (7714). CPU 3 found
    # 0x203 gone: predicted from the trace order, it would get 0x203.
    fx, events = _load("6.1-4cpu-pressure-compact")
    take, other, alloc = (_by_line(events, n) for n in (7711, 7713, 7714))
    assert (events[take].name, events[take].cpu, events[take].pfn) == (MM_PAGE_ALLOC_ZONE_LOCKED, 2, 0x203)
    assert (events[other].name, events[other].cpu, events[other].pfn) == (MM_PAGE_ALLOC, 3, 0x2c5)
    assert (events[alloc].name, events[alloc].cpu, events[alloc].pfn) == (MM_PAGE_ALLOC, 2, 0x203)
    assert allocs_after_takes(fx, events)[take] == alloc
    r, rep = _replay(fx, events)
    assert r.stepped_at_take(alloc) is not None
    recs = {x.lineno: x for x in rep.records}
    assert recs[7713].hit and recs[7713].predicted_pfn == 0x2c5
    assert recs[7714].hit and recs[7714].predicted_pfn == 0x203
    assert rep.hits == rep.allocations


def test_a_buddy_free_after_the_take_is_not_seen_by_it():
    # 5.10, 2 vCPUs: CPU 0 takes an order-1 block 0x5670 off the buddy
    # (line 8958, rmqueue, need-resched set: its mm_page_alloc comes 50
    # events later, line 9009); CPU 1 frees the order-1 block 0x5654 to the
    # head of that list just after the take (8959). The take did not see it.
    fx, events = _load("5.10-2cpu-pressure-compact")
    take, free, alloc = (_by_line(events, n) for n in (8958, 8959, 9009))
    assert (events[take].cpu, events[take].pfn, events[take].order) == (0, 0x5670, 1)
    assert (events[free].cpu, events[free].pfn, events[free].order) == (1, 0x5654, 1)
    assert allocs_after_takes(fx, events)[take] == alloc
    _, rep = _replay(fx, events)
    rec = next(x for x in rep.records if x.lineno == 9009)
    assert rec.hit and rec.predicted_pfn == 0x5670


def test_a_task_preempted_after_its_take():
    # 7.2 (PREEMPT_LAZY), 1 vCPU: dd takes the order-9 block 0x400 for the
    # pcp (line 526, flags "dl.3.": need-resched-lazy set); workload runs
    # on the CPU and allocates and frees (527, 528); dd's mm_page_alloc of
    # 0x400 follows (529). The allocation is replayed before workload's
    # events; an interrupt's events (the same pid) would end the match.
    fx, events = _load("7.2-1cpu-pressure-compact")
    take, alloc = _by_line(events, 526), _by_line(events, 529)
    assert {events[k].pid for k in (take, alloc)} != {events[k].pid for k in range(take + 1, alloc)}
    assert allocs_after_takes(fx, events)[take] == alloc
    r, rep = _replay(fx, events)
    assert r.stepped_at_take(alloc) is not None
    assert all(x.hit for x in rep.records if x.lineno in (527, 529))


@pytest.mark.parametrize("name", ["6.1-4cpu-pressure-compact", "5.10-2cpu-pressure-compact",
                                  "5.10-2cpu-tmpfs-write", "6.1-2cpu-tmpfs-write",
                                  "7.2-1cpu-pressure-compact"])
def test_same_as_the_trace_with_each_alloc_moved_to_its_take(name):
    # The rule is the kernel's order: replaying the trace with every such
    # mm_page_alloc moved up to just after its take scores the same, alloc
    # for alloc.
    fx, events = _load(name)
    takes = allocs_after_takes(fx, events)
    moved_allocs = {j for i, j in takes.items() if j - i > 1}
    assert moved_allocs
    reordered = []
    for i, e in enumerate(events):
        if i in moved_allocs:
            continue
        reordered.append(e)
        if i in takes and takes[i] in moved_allocs:
            reordered.append(events[takes[i]])
    _, rep = _replay(fx, events)
    _, ref = _replay(fx, reordered)
    assert {x.lineno: (x.predicted_pfn, x.hit) for x in rep.records} == \
        {x.lineno: (x.predicted_pfn, x.hit) for x in ref.records}
    assert (rep.refills_exact, rep.drains_exact) == (ref.refills_exact, ref.drains_exact)
