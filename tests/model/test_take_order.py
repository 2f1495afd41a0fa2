"""An allocation happens at its take, not at its ``mm_page_alloc``.

The kernel takes the block under ``zone->lock``, where it traces
``mm_page_alloc_zone_locked`` (5.10 ``__rmqueue`` L2875; 6.1+
``__rmqueue_smallest``), and a pcp refill's head is popped before the
interrupts (5.10 ``rmqueue_pcplist`` L3401) or the pcp lock (6.1 L3833,
6.12 L3104, 7.2 L3361) are given back; ``mm_page_alloc`` is traced when
``__alloc_pages`` returns (5.10 L5057, 6.1 L5680, 6.12 L4881, 7.2 L5382).
Whatever is traced between the two, on any CPU, came after the take.
Checked on the committed recordings where it shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from buddyscope.model import replay as replay_module
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import Replayer
from buddyscope.model.stepping import Stepper
from buddyscope.model.stream import alloc_takes

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"


def _recording(name):
    fx = Fixture.load(RECORDINGS / f"{name}.json.gz")
    return fx, parse_lines(fx.trace).events


def _replay(fx, events):
    r = Replayer(fx.snapshot, events_enabled=fx.provenance.get("events_enabled"))
    return r.run(events)


def _record(rep, lineno):
    (rec,) = [r for r in rep.records if r.lineno == lineno]
    return rec


def _at(events, lineno):
    (i,) = [i for i, e in enumerate(events) if e.lineno == lineno]
    return i


def test_5_10_a_free_on_the_other_cpu_after_the_take_comes_after_the_allocation(monkeypatch):
    # 5.10-2cpu-pressure-compact, trace lines:
    #  8958 base64-316 [000] d... 9700: mm_page_alloc_zone_locked: pfn=22128 order=1 migratetype=0
    #  8959 agent-315  [001] .... 9701: mm_page_free: pfn=22100 order=1
    #  9009 base64-316 [000] .N.. 9751: mm_page_alloc: pfn=22128 order=1 migratetype=0
    # An order-1 request goes straight to rmqueue's buddy path (5.10 L3426:
    # pcp lists are order 0 only); CPU 1's order-1 free (__free_pages_ok ->
    # free_one_page) puts 22100 at the head of the order-1 Unmovable list one
    # counter tick after CPU 0 took 22128 from it. CPU 0 was preempted
    # (need-resched "N") before its mm_page_alloc.
    fx, events = _recording("5.10-2cpu-pressure-compact")
    take, free, alloc = (events[_at(events, n)] for n in (8958, 8959, 9009))
    assert (take.name, take.cpu, take.pfn, take.order) == ("mm_page_alloc_zone_locked", 0, 22128, 1)
    assert (free.name, free.cpu, free.pfn, free.order) == ("mm_page_free", 1, 22100, 1)
    assert (alloc.name, alloc.cpu, alloc.pfn, alloc.order) == ("mm_page_alloc", 0, 22128, 1)
    takes = alloc_takes(events, strict_mt=True)
    assert takes[_at(events, 8958)] == _at(events, 9009)

    rec = _record(_replay(fx, events), 9009)
    assert rec.hit and rec.predicted_pfn == 22128

    # Stepped at its mm_page_alloc instead, after the free: the model hands
    # out the freed block, the kernel did not.
    monkeypatch.setattr(replay_module, "alloc_takes", lambda events, strict_mt: {})
    rec = _record(_replay(fx, events), 9009)
    assert not rec.hit and rec.predicted_pfn == 22100


@pytest.mark.parametrize("name, take, alloc, between", [
    # 6.1: CPU 0 frees an order-1 page after CPU 1's order-0 refill.
    ("6.1-2cpu-tmpfs-write", 2037, 2039, {(0, "mm_page_free")}),
    # 7.2 (one CPU): softirq frees, then dd runs while workload-241, which
    # refilled its order-2 list, waits to trace its mm_page_alloc.
    ("7.2-1cpu-pipes-sockets", 486, 524, {(0, "mm_page_free"), (0, "mm_page_alloc")}),
    # 7.2: workload-282 runs between dd's order-9 take and its mm_page_alloc.
    ("7.2-1cpu-pressure-compact", 526, 529, {(0, "mm_page_free"), (0, "mm_page_alloc")}),
    # 5.10: CPU 1's allocations between CPU 0's take and its mm_page_alloc.
    ("5.10-2cpu-tmpfs-write", 18, 21, {(1, "mm_page_alloc")}),
])
def test_the_same_pattern_on_other_series_is_stepped_at_the_take(monkeypatch, name, take, alloc,
                                                                  between):
    # Nothing traced between these takes and their mm_page_alloc touches
    # the lists the take used: stepping at the take predicts the same.
    fx, events = _recording(name)
    i, j = _at(events, take), _at(events, alloc)
    assert alloc_takes(events, strict_mt=name.startswith("5.10"))[i] == j
    assert {(e.cpu, e.name) for e in events[i + 1:j]} == between
    rep = _replay(fx, events)
    assert _record(rep, alloc).hit
    monkeypatch.setattr(replay_module, "alloc_takes", lambda events, strict_mt: {})
    at_alloc = _replay(fx, events)
    assert [(r.lineno, r.predicted_pfn) for r in sorted(rep.records, key=lambda r: r.lineno)] == \
        [(r.lineno, r.predicted_pfn) for r in at_alloc.records]


def test_no_take_is_stepped_twice_nor_left_out():
    # Every allocation is scored once, whether stepped at its take or at
    # its mm_page_alloc; the records of those stepped early come first.
    fx, events = _recording("5.10-2cpu-pressure-compact")
    rep = _replay(fx, events)
    allocs = [e.lineno for e in events if e.name == "mm_page_alloc" and e.pfn is not None]
    assert sorted(r.lineno for r in rep.records) == allocs
    order = [r.lineno for r in rep.records]
    assert order.index(9009) < order.index(8960)   # CPU 1's mm_page_alloc after the take


def test_stepping_shows_the_prediction_made_at_the_take():
    # The TUI's stepper: at the step before line 9009, the model already
    # holds the allocation (taken 51 lines earlier); the prediction shown
    # is the one made at the take, and the scored record is that one.
    fx, events = _recording("5.10-2cpu-pressure-compact")
    st = Stepper(fx.snapshot, events, name="5.10-2cpu-pressure-compact",
                 events_enabled=fx.provenance.get("events_enabled"))
    j = _at(events, 9009)
    before = st.state_at(j)
    assert before.next_event.lineno == 9009
    assert before.next_predicted == 22128
    after = st.state_at(j + 1)
    assert after.last_record is not None and after.last_record.lineno == 9009
    assert after.last_record.hit


def test_removals_the_task_traced_past_are_not_its_take():
    # 6.12-2cpu-thp with its kprobe events dropped (a plain trace-cmd
    # recording): agent-145's alloc_pages_bulk refill (lines 963-993, 31
    # order-0 zone_locked events; alloc_pages_bulk at 962 and _ret at 994
    # dropped) is held as if an allocation's, and the next order-0
    # mm_page_alloc (996) takes it. But agent-145 traced its own order-1
    # mm_page_alloc (995) in between: a task cannot allocate again between
    # its take and its own mm_page_alloc, so those events were no take of
    # the allocation at 996, which is stepped where it is traced.
    fx, events = _recording("6.12-2cpu-thp")
    kmem = [e for e in events if e.name.startswith("mm_")]
    own = kmem[_at(kmem, 995)]
    assert (own.pid, own.cpu, own.order, own.in_interrupt) == (145, 1, 1, False)
    assert _at(kmem, 993) not in alloc_takes(kmem, strict_mt=False)
    # With the kprobe events the bulk call owns the refill: nothing held.
    assert alloc_takes(events, strict_mt=False) == {}
