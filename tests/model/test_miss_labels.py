"""Every miss label replay gives, proven on a real recording (issue 12, item 4).

Each test replays a committed recording, whole or with events removed as a
user's partial trace would lack them (no kprobes, a lost line), and asserts
the label of the misses AND the cause the trace itself shows (the event
order, the events removed, the snapshot's lists), never the model's own
opinion alone. Labels no real trace has produced are listed in JUSTIFIED,
each with why it is kept.

Also here: no cascades. One lost ``mm_page_alloc`` line costs at most two
misses in a row, and the model's recovery keeps every page the trace has
not shown taken (issue 12's "21 pages marked taken late" case).
"""

from __future__ import annotations

import random

import pytest

from buddyscope.model.events import (
    ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET, BULK_EVENTS, ISOLATE_EVENTS, MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN, WATERMARK_EVENTS,
)
from buddyscope.model.replay import Replayer, replay
from buddyscope.model.replay_report import REASONS

import recorded

FREES = (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED)
TAKES = (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED)


def _recording(name):
    # Loaded and parsed once per run, shared (tests/recorded.py): read only.
    return recorded.fixture(name), tuple(recorded.parsed(name).events)


def _replay(name, drop_names=(), drop=None):
    """Replay *name* without the events named in *drop_names* (and their
    names left out of what the recording says it traced) and without those
    *drop* picks. Line numbers stay those of the recording."""
    if not drop_names and drop is None:
        # The whole recording: its replay is computed once per run (read only).
        return recorded.replayed(name, enabled=True)
    fx, events = _recording(name)
    kept = [e for e in events if e.name not in drop_names and not (drop and drop(e))]
    enabled = [n for n in fx.provenance.get("events_enabled") or () if n not in drop_names]
    return replay(fx.snapshot, kept, events_enabled=enabled)


def _labelled(rep, reason):
    return [r for r in rep.misses() if r.reason == reason]


def _between(events, first, last, cpu=None):
    """Events strictly between two line numbers (on *cpu*)."""
    return [e for e in events if first < e.lineno < last and (cpu is None or e.cpu == cpu)]


def _snapshot_free_pages(snapshot):
    """PFN -> 'pcp' or 'buddy' for every page free in the snapshot."""
    free = {}
    for z in snapshot.zones:
        for o, area in enumerate(z.free_area):
            for pfns in area.free_list or []:
                for b in pfns:
                    free.update(dict.fromkeys(range(b, b + (1 << o)), "buddy"))
        for p in z.pcp:
            for pfns in p.lists or []:
                free.update(dict.fromkeys(pfns, "pcp"))
    return free


def _covers(e, pfn):
    order = e.alloc_order if e.name == MM_PAGE_ALLOC_EXTFRAG else e.order
    return e.pfn is not None and e.pfn <= pfn < e.pfn + (1 << (order or 0))


# -- bulk_allocator -------------------------------------------------------------------
def test_bulk_allocator_in_a_trace_without_the_bulk_kprobes():
    # 6.1 fork-exec: vmalloc'd kernel stacks come from alloc_pages_bulk,
    # which takes pcp heads with no kmem event.
    name = "6.1-1cpu-fork-exec"
    _, events = _recording(name)
    whole = _replay(name)
    rep = _replay(name, drop_names=BULK_EVENTS)
    misses = rep.misses()
    assert misses and all(r.reason == "bulk_allocator" for r in misses)
    for r in misses:
        # The cause, in the recording: a bulk call on that CPU before the
        # miss that returned pages, after which no event named the page the
        # model predicted: it left the pcp list untraced...
        calls = [e for e in events if e.name == ALLOC_PAGES_BULK_RET and e.cpu == r.cpu
                 and e.lineno < r.lineno and e.count]
        assert calls
        assert not [e for e in _between(events, calls[-1].lineno, r.lineno)
                    if e.pfn == r.predicted_pfn]
        # ...and with the bulk events kept, the same allocation is a hit.
        assert whole.records[r.index].hit and whole.records[r.index].lineno == r.lineno


def test_bulk_allocator_refill_with_no_allocation_after_it():
    # 6.12 under pressure: a bulk call refilled the order-0 list (7
    # zone_locked events, no mm_page_alloc); without the bulk events those
    # pages wait for an allocation to claim them, and an order-1 refill the
    # model predicted from them misses: the untraced bulk call's doing.
    name = "6.12-2cpu-pressure-compact"
    _, events = _recording(name)
    rep = _replay(name, drop_names=BULK_EVENTS)
    misses = rep.misses()
    assert all(r.reason == "bulk_allocator" for r in misses)
    order1 = [r for r in misses if r.order == 1]
    assert order1
    for r in order1:
        taken = [e for e in events if e.name == MM_PAGE_ALLOC_ZONE_LOCKED and e.order == 0
                 and e.cpu == r.cpu and e.pfn == r.predicted_pfn and e.lineno < r.lineno]
        assert taken, "the predicted page was taken off the buddy by an order-0 refill"
        bulk = [e for e in events if e.name == ALLOC_PAGES_BULK and e.cpu == r.cpu
                and e.lineno < taken[-1].lineno]
        rets = [e for e in events if e.name == ALLOC_PAGES_BULK_RET and e.cpu == r.cpu
                and e.lineno > taken[-1].lineno]
        assert bulk and rets, "inside a bulk call of the recording"
        assert not [e for e in _between(events, taken[-1].lineno, r.lineno)
                    if e.name == MM_PAGE_ALLOC and e.pfn == r.predicted_pfn]


# -- pcp_taken_untraced, and no cascade after a lost mm_page_alloc ---------------------------
def _lost_alloc_cases(name, n, seed=12):
    """Order-0 pcp hits whose next allocation on the same CPU, list and
    task is a pcp hit too, with no event of that CPU but allocations in
    between: losing the first leaves its page at the model's list head."""
    fx, events = _recording(name)
    whole = _replay(name)
    hits = {r.lineno: r for r in whole.records if r.hit and r.path == "pcp" and r.order == 0}
    cases = []
    for k, e in enumerate(events):
        if e.lineno not in hits:
            continue
        for f in events[k + 1:]:
            if f.cpu != e.cpu:
                continue
            if f.name == MM_PAGE_ALLOC and f.order == 0 and f.migratetype == e.migratetype:
                if f.lineno in hits and f.pid == e.pid:
                    cases.append((e, f))
            if f.name != MM_PAGE_ALLOC or f.order == 0:
                break
    return random.Random(seed).sample(cases, min(n, len(cases)))


@pytest.mark.parametrize("name", ["5.10-1cpu-fork-exec", "6.1-2cpu-fork-exec",
                                  "6.12-1cpu-tmpfs-write", "7.2-1cpu-fork-exec"])
def test_pcp_taken_untraced_after_a_lost_alloc_and_no_cascade(name):
    whole = _replay(name)
    before = {r.lineno for r in whole.misses()}
    cases = _lost_alloc_cases(name, 4)
    assert cases
    for lost, nxt in cases:
        rep = _replay(name, drop=lambda e: e is lost)
        new = [r for r in rep.misses() if r.lineno not in before]
        # The next allocation of that list misses: the model still held the
        # lost allocation's page at the head, the kernel had handed it out.
        assert (new[0].lineno, new[0].predicted_pfn) == (nxt.lineno, lost.pfn)
        # On 7.2 the model may then expect the task before to have taken
        # the page and be traced late: once wrong, one more miss, labelled
        # for the same untraced take.
        # When an interrupt had freed the lost page in a pcp-lock window no
        # event shows (7.2), the trace cannot tell a lost mm_page_alloc from
        # a free that went to the buddy: either label names a cause it shows.
        assert len(new) <= 2 and all(r.reason in ("pcp_taken_untraced", "free_under_pcp_lock")
                                     for r in new)
        assert all(r.predicted_pfn == lost.pfn for r in new)
        # No cascade: then the model is in step again.
        assert rep.longest_miss_run <= max(2, whole.longest_miss_run)


def test_recovery_keeps_pages_the_trace_has_not_shown_taken():
    # Issue 12's cascade: a recovery that took off the list the pages freed
    # after the CPU's last traced allocation (21 of them on 7.2), which the
    # kernel then handed out LIFO. After each lost alloc, every page freed
    # onto that CPU's pcp after its last traced allocation is still there.
    name = "7.2-1cpu-fork-exec"
    fx, events = _recording(name)
    for lost, nxt in _lost_alloc_cases(name, 4, seed=3):
        kept = [e for e in events if e is not lost]
        r = Replayer(fx.snapshot, events_enabled=fx.provenance.get("events_enabled"))
        seen = {}

        def after(i, e, r=r):
            if e is nxt:
                seen["on_pcp"] = set(r.alloc.on_pcp)
        r.after_event = after
        last_alloc = max(e.lineno for e in kept if e.name == MM_PAGE_ALLOC
                         and e.cpu == nxt.cpu and e.lineno < nxt.lineno)
        freed_since = {e.pfn for e in _between(kept, last_alloc, nxt.lineno, nxt.cpu)
                       if e.name in FREES}
        r.run(kept)
        assert freed_since <= seen["on_pcp"]


def test_a_task_has_one_allocation_in_flight():
    # 7.2-1cpu-fork-exec with the mm_page_free_batched of 0x31e4 (line 3031)
    # lost: its mm_page_free (line 3005) now commits at once, under the pages
    # workload-240 freed after it, so when the kernel hands 0x31e4 out from
    # its head (line 3120, sh-262) the model holds six pages ahead of it.
    # Replay takes them off as gone untraced and guesses them taken by
    # workload-240, the task traced before sh-262's run, preempted before
    # its mm_page_alloc. A task has one allocation in flight: its next
    # mm_page_alloc in task context is that one and settles the guesses.
    # Kept, each guess was predicted again for workload-240's later
    # allocations (lines 3202, 3309, 3310, 3311: a run of three misses).
    name = "7.2-1cpu-fork-exec"
    _, events = _recording(name)
    [lost] = [e for e in events if e.lineno == 3031]
    assert (lost.name, lost.pfn) == (MM_PAGE_FREE_BATCHED, 0x31e4)
    own = [e for e in events if e.lineno < lost.lineno and e.pfn == lost.pfn][-1]
    assert (own.name, own.pid) == (MM_PAGE_FREE, lost.pid)
    whole = _replay(name)
    before = {r.lineno for r in whole.misses()}
    rep = _replay(name, drop=lambda e: e is lost)
    new = [r for r in rep.misses() if r.lineno not in before]
    first = new[0]
    assert (first.lineno, first.actual_pfn, first.reason) == (3120, lost.pfn, "pcp_taken_untraced")
    # The guessed task traced an allocation in task context after that miss
    # and before any later one of the list...
    miss = next(e for e in events if e.lineno == first.lineno)
    settles = next(e for e in events if e.lineno > first.lineno and e.name == MM_PAGE_ALLOC
                   and e.pid == lost.pid and not e.in_interrupt)
    assert settles.pid != miss.pid and settles.lineno < 3202
    # ...so its later allocations are predicted from the lists again.
    recs = {r.lineno: r for r in rep.records}
    assert all(recs[n].hit for n in (3202, 3309, 3310, 3311))
    assert len(new) <= 2 and rep.longest_miss_run <= 2


@pytest.mark.parametrize("name", ["5.10-1cpu-fork-exec", "6.1-2cpu-fork-exec",
                                  "6.12-1cpu-tmpfs-write", "7.2-1cpu-fork-exec"])
def test_no_cascade_after_a_lost_free(name):
    # One lost mm_page_free or mm_page_free_batched line costs at most two
    # misses in a row (25 sampled per recording).
    _, events = _recording(name)
    frees = [e for e in events if e.name in FREES]
    for lost in random.Random(7).sample(frees, 25):
        rep = _replay(name, drop=lambda e: e is lost)
        assert rep.longest_miss_run <= 2, (name, lost.lineno)


# -- pcp_list_order: a recovery the kernel refutes ----------------------------------------------
def test_pcp_list_order_after_a_lost_free():
    # 6.12: lose one mm_page_free_batched line. The kernel hands that page
    # out from its pcp head; the model, which never had it there, takes the
    # pages ahead of it as gone untraced (pcp_taken_untraced). The kernel's
    # next allocation is one of those pages: they were not gone, the
    # model's list order was not the kernel's. It puts the rest back and
    # the misses stop there (issue 12: no cascade).
    name = "6.12-2cpu-tmpfs-write"
    _, events = _recording(name)
    whole = _replay(name)
    before = {r.lineno for r in whole.misses()}
    proven = 0
    for lost in [e for e in events if e.name == MM_PAGE_FREE_BATCHED][300:340]:
        rep = _replay(name, drop=lambda e: e is lost)
        new = [r for r in rep.misses() if r.lineno not in before]
        if not any(r.reason == "pcp_list_order" for r in new):
            continue
        first, second = new
        assert (first.actual_pfn, first.reason) == (lost.pfn, "pcp_taken_untraced")
        assert (second.actual_pfn, second.reason) == (first.predicted_pfn, "pcp_list_order")
        assert second.cpu == first.cpu
        assert rep.longest_miss_run <= 2
        proven += 1
    assert proven


# -- alloc_traced_late --------------------------------------------------------------------------
def test_alloc_traced_late_on_7_2():
    # 7.2 is PREEMPT_LAZY: a task preempted between its pcp take and its
    # mm_page_alloc is traced after the next task's allocation.
    name = "7.2-1cpu-fallback"
    _, events = _recording(name)
    rep = _replay(name)
    late = _labelled(rep, "alloc_traced_late")
    assert late
    for r in late:
        # The page the model predicted is allocated later on that CPU by
        # another task, with no event naming it in between...
        later = [e for e in events if e.name == MM_PAGE_ALLOC and e.pfn == r.predicted_pfn
                 and e.lineno > r.lineno]
        assert later and later[0].cpu == r.cpu
        miss = next(e for e in events if e.lineno == r.lineno)
        assert later[0].pid != miss.pid
        assert not [e for e in _between(events, r.lineno, later[0].lineno)
                    if e.pfn == r.predicted_pfn]
        # ...a task that ran on that CPU before the miss, after the missing
        # task's previous allocation there.
        prev = max(e.lineno for e in events if e.name == MM_PAGE_ALLOC and e.pid == miss.pid
                   and e.cpu == r.cpu and e.lineno < r.lineno)
        assert [e for e in _between(events, prev, r.lineno, r.cpu) if e.pid == later[0].pid]
        # The late allocation itself is no miss.
        assert next(x for x in rep.records if x.lineno == later[0].lineno).hit


# -- free_traced_before_alloc ------------------------------------------------------------------
def test_free_traced_before_alloc_on_7_2():
    # Softirq frees (the 's' in the flags column) on the CPU between a
    # task's pcp take and its mm_page_alloc are traced before it.
    name = "7.2-1cpu-fork-exec"
    _, events = _recording(name)
    rep = _replay(name)
    found = _labelled(rep, "free_traced_before_alloc")
    assert found
    for r in found:
        before = [e for e in events if e.cpu == r.cpu and e.lineno < r.lineno]
        freed = before[-1]
        assert freed.name in FREES and freed.pfn == r.predicted_pfn
        assert freed.in_interrupt and freed.flags[2] == "s"
        # The kernel hands that page out next (it was behind the one taken).
        nxt = next(e for e in events if e.cpu == r.cpu and e.lineno > r.lineno)
        assert nxt.name == MM_PAGE_ALLOC and nxt.pfn == r.predicted_pfn
        assert next(x for x in rep.records if x.lineno == nxt.lineno).hit


def test_free_traced_before_alloc_is_not_told_by_the_trace():
    # Why these misses stay: the same shape goes both ways. In
    # 7.2-1cpu-fork-exec workload-240 is interrupted (softirq frees in its
    # context, flags ".Ns..") and then traces an order-0
    # GFP_KERNEL_ACCOUNT|__GFP_ZERO allocation with preempt count 0, at
    # lines 4732 and 5357 as at 5736 and 6345. At the first two its page is
    # the burst's last free (the frees came before its take); at the last
    # two it is the page at the head before the burst (the take came first,
    # then the interrupt, while the page was zeroed or charged, before
    # trace_mm_page_alloc). No event marks a 7.2 pcp hit's take.
    name = "7.2-1cpu-fork-exec"
    _, events = _recording(name)
    rep = _replay(name)
    recs = {r.lineno: r for r in rep.records}
    shapes = {}
    for n in (4732, 5357, 5736, 6345):
        k = next(i for i, e in enumerate(events) if e.lineno == n)
        alloc = events[k]
        j = k
        while events[j - 1].flags[2] == "s":
            j -= 1
        burst = events[j:k]
        assert burst and all(e.name == MM_PAGE_FREE and e.pid == alloc.pid and e.flags == ".Ns.."
                             for e in burst)
        assert alloc.name == MM_PAGE_ALLOC and not alloc.in_interrupt and alloc.preempt_depth == 0
        shapes[n] = (alloc.order, alloc.gfp, alloc.pfn == burst[-1].pfn)
    assert {s[:2] for s in shapes.values()} == {(0, "GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP")}
    assert [shapes[n][2] for n in (4732, 5357, 5736, 6345)] == [True, True, False, False]
    assert recs[4732].hit and recs[5357].hit
    assert [recs[n].reason for n in (5736, 6345)] == ["free_traced_before_alloc"] * 2


# -- alloc_in_flight_at_snapshot ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["5.10-1cpu-pressure-tmpfs", "7.2-2cpu-fork-exec"])
def test_alloc_in_flight_at_snapshot(name):
    fx, events = _recording(name)
    rep = _replay(name)
    found = _labelled(rep, "alloc_in_flight_at_snapshot")
    assert found
    free = _snapshot_free_pages(fx.snapshot)
    for r in found:
        miss = next(e for e in events if e.lineno == r.lineno)
        # The task's first event on that CPU, of a block the snapshot held
        # on no list and no earlier event named.
        assert not [e for e in events if e.lineno < r.lineno and (e.cpu, e.pid) == (miss.cpu, miss.pid)]
        assert not any(p in free for p in range(miss.pfn, miss.pfn + (1 << miss.order)))
        assert not [e for e in events if e.lineno < r.lineno and e.pfn == miss.pfn]


# -- page_not_free_in_model ---------------------------------------------------------------------
def test_page_not_free_in_model_after_a_lost_free():
    # 5.10: an order-1 free goes to the buddy (no pcp list for order 1). Lose
    # its mm_page_free line and the kernel's later allocation of that block
    # takes a block the model holds allocated.
    name = "5.10-1cpu-fork-exec"
    _, events = _recording(name)
    whole = _replay(name)
    hits = {r.lineno for r in whole.records if r.hit}
    cases = []
    for k, e in enumerate(events):
        if e.name == MM_PAGE_FREE and e.order == 1:
            nxt = next((f for f in events[k + 1:] if f.pfn == e.pfn), None)
            if nxt is not None and nxt.name == MM_PAGE_ALLOC_ZONE_LOCKED:
                alloc = next(f for f in events if f.lineno > nxt.lineno and f.name == MM_PAGE_ALLOC
                             and f.cpu == nxt.cpu)
                if alloc.pfn == e.pfn and alloc.lineno in hits:
                    cases.append((e, alloc))
    assert cases
    for lost, alloc in cases[:3]:
        rep = _replay(name, drop=lambda e: e is lost)
        r = next(x for x in rep.records if x.lineno == alloc.lineno)
        assert not r.hit and r.reason == "page_not_free_in_model"
        assert rep.contradictions["buddy_removal_of_page_not_free"] >= 1
        assert rep.longest_miss_run <= 2


# -- compaction ---------------------------------------------------------------------------------
def test_compaction_in_a_trace_without_the_isolate_kprobes():
    # 7.2 pressure-tmpfs was recorded without the __isolate_free_page
    # kprobe: kcompactd and direct compaction took free pages untraced.
    name = "7.2-1cpu-pressure-tmpfs"
    fx, events = _recording(name)
    assert not set(ISOLATE_EVENTS) & set(fx.provenance["events_enabled"])
    rep = _replay(name)
    found = _labelled(rep, "compaction")
    assert found
    pb = 1 << fx.snapshot.kernel.pageblock_order
    free = _snapshot_free_pages(fx.snapshot)
    for r in found:
        # In the predicted block's pageblock the trace frees a page that was
        # free in the snapshot and that no event took before that free: it
        # left the free lists with no event.
        block = r.predicted_pfn // pb
        untraced = []
        for e in events:
            if e.name in FREES and e.pfn // pb == block and e.pfn in free:
                if not [t for t in events if t.lineno < e.lineno and t.name in TAKES + (
                        MM_PAGE_ALLOC_EXTFRAG,) and _covers(t, e.pfn)]:
                    untraced.append(e)
        assert untraced, f"miss at line {r.lineno}"
    # The windows: kcompactd at work, by its task name, and the frees.
    windows = [w for w in rep.windows if w[0] == "compaction"]
    kcompactd = [e.lineno for e in events if e.comm.startswith("kcompactd")]
    assert kcompactd and windows
    assert all(any(w[2] <= n <= w[3] for w in windows) for n in kcompactd)


def test_pressure_compact_without_the_isolate_kprobes():
    # The committed pressure-compact recordings with the isolate events
    # removed, as a user's own recording has them: the replay completes,
    # kcompactd's work is marked, and no miss appears that the events
    # would have avoided (on these recordings the pages compaction took
    # came back after the trace ended, or not at all).
    for name in ("5.10-2cpu-pressure-compact", "6.1-1cpu-pressure-compact",
                 "6.12-2cpu-pressure-compact", "7.2-1cpu-pressure-compact"):
        _, events = _recording(name)
        whole = _replay(name)
        rep = _replay(name, drop_names=ISOLATE_EVENTS)
        assert rep.allocations == whole.allocations
        assert {r.lineno for r in rep.misses()} == {r.lineno for r in whole.misses()}
        # kcompactd's other events (the frees of the pages it migrated)
        # are in compaction windows; on 5.10, whose isolations succeeded,
        # one opens right after them.
        kcompactd = [e for e in events if e.comm.startswith("kcompactd")
                     and e.name not in ISOLATE_EVENTS]
        windows = [w for w in rep.windows if w[0] == "compaction"]
        assert all(any(w[2] <= e.lineno <= w[3] for w in windows) for e in kcompactd), name
        took = [e for e in events if e.name == ISOLATE_EVENTS[1] and e.count]
        if took:
            assert any(0 < w[2] - took[0].lineno <= 64 for w in windows)


# -- zone, watermarks_untraced ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["6.1-1cpu-pressure-compact", "6.1-4cpu-pressure-compact",
                                  "6.12-2cpu-pressure-compact", "7.2-1cpu-pressure-compact"])
def test_watermarks_raised_with_no_event(name):
    # Turning THP on raises min_free_kbytes: setup_per_zone_wmarks, traced
    # only by record's kretprobe. Without it the model finds DMA32 above a
    # watermark the kernel has it below, and the kernel serves from DMA.
    # DMA32 passed the low watermark in the model by more than lagging
    # counters hide (each CPU's stat_threshold): not a "zone" miss of the
    # lagging counters, but the untraced raise, and labelled so.
    fx, events = _recording(name)
    whole = _replay(name)
    rep = _replay(name, drop_names=WATERMARK_EVENTS)
    found = _labelled(rep, "watermarks_untraced")
    assert found and not _labelled(rep, "zone")
    a = Replayer(fx.snapshot).alloc
    for r in found:
        raised = [e for e in events if e.name in WATERMARK_EVENTS and e.lineno < r.lineno]
        assert raised
        actual = a.zone_of(r.actual_pfn)
        assert actual.name != r.predicted_zone
        assert actual.zone_idx < next(z.zone_idx for z in a.zones if z.name == r.predicted_zone)
        assert whole.records[r.index].hit
    # With the watermark events named as traced (the recording's own
    # events_enabled), the same miss stays "zone": nothing was untraced.
    fx_enabled = fx.provenance.get("events_enabled") or ()
    assert WATERMARK_EVENTS[0] in fx_enabled
    kept = [e for e in events if e.name not in WATERMARK_EVENTS]
    told = replay(fx.snapshot, kept, events_enabled=fx_enabled)
    assert {r.lineno for r in _labelled(told, "zone")} == {r.lineno for r in found}


def test_take_before_stall():
    # 7.2 2-CPU pressure-tmpfs: CPU 1 traces a pcp hit from DMA32 at line
    # 2396 and then nothing until line 4364, while CPU 0's allocations take
    # DMA32 below its low watermark (from line 3943 they come from DMA).
    # The held-out 6.1 pressure-anon trace (4 vCPUs, not committed) has such
    # a silent CPU whose next mm_page_alloc, traced after the zone went
    # below, is a DMA32 pcp hit: the take came before, no event shows it.
    # Here that is made from the real trace by moving line 2396 to the end
    # of CPU 1's silence (nothing else on CPU 1 moves past it).
    name = "7.2-2cpu-pressure-tmpfs"
    fx, events = _recording(name)
    i, n = (next(k for k, e in enumerate(events) if e.lineno == x) for x in (2396, 4364))
    moved = events[i]
    assert (moved.name, moved.cpu) == (MM_PAGE_ALLOC, 1)
    assert all(e.cpu != 1 for e in events[i + 1:n]) and events[n].cpu == 1
    a = Replayer(fx.snapshot).alloc
    assert a.zone_of(moved.pfn).name == "DMA32"
    assert any(e.name == MM_PAGE_ALLOC and e.cpu == 0 and a.zone_of(e.pfn).name == "DMA"
               for e in events[i + 1:n])
    enabled = fx.provenance.get("events_enabled")
    whole = replay(fx.snapshot, list(events), events_enabled=enabled)
    assert next(r for r in whole.records if r.lineno == moved.lineno).hit
    rep = replay(fx.snapshot, list(events[:i] + events[i + 1:n] + (moved,) + events[n:]),
                 events_enabled=enabled)
    r = next(r for r in rep.records if r.lineno == moved.lineno)
    assert not r.hit and r.reason == "take_before_stall"
    assert (r.predicted_zone, r.actual_path, r.actual_pfn) == ("DMA", "pcp", moved.pfn)
    assert rep.hits == whole.hits - 1 and rep.longest_miss_run == 1


# -- an untraced bulk call's refill, not a fallback ------------------------------------------
def test_untraced_bulk_refill_with_a_steal_is_bulk_allocator():
    # 6.1 tmpfs-write without the bulk events: a bulk call's refill stole a
    # block (mm_page_alloc_extfrag inside the call); with no bulk events
    # those removal events wait for the next order-0 allocation, which
    # then looks like a fallback. They were traced before the task's own
    # previous allocation: not that allocation's.
    name = "6.1-2cpu-tmpfs-write"
    _, events = _recording(name)
    rep = _replay(name, drop_names=BULK_EVENTS)
    assert not _labelled(rep, "fallback")
    inside = []
    for r in _labelled(rep, "bulk_allocator"):
        if r.actual_path != "fallback":
            continue
        steal = max(e.lineno for e in events if e.name == MM_PAGE_ALLOC_EXTFRAG
                    and e.cpu == r.cpu and e.lineno < r.lineno)
        entry = max(e.lineno for e in events if e.name == ALLOC_PAGES_BULK and e.cpu == r.cpu
                    and e.lineno < steal)
        ret = min(e.lineno for e in events if e.name == ALLOC_PAGES_BULK_RET and e.cpu == r.cpu
                  and e.lineno > entry)
        assert entry < steal < ret < r.lineno
        inside.append(r)
    assert inside


# -- buddy_list_order and untraced_buddy_removal: while the model still misses them ---------------
def test_buddy_list_order():
    # 5.10 pressure-compact: both blocks were free on the same list; the
    # kernel took another one first (compaction reorders free lists).
    name = "5.10-2cpu-pressure-compact"
    _, events = _recording(name)
    found = _labelled(_replay(name), "buddy_list_order")
    if not found:
        pytest.skip("no buddy_list_order miss left on this recording")
    for r in found:
        taken = [e for e in events if e.name == MM_PAGE_ALLOC_ZONE_LOCKED and e.pfn == r.actual_pfn
                 and e.lineno < r.lineno]
        assert taken and taken[-1].order == r.order and taken[-1].cpu == r.cpu
        # The block the model predicted was free in the kernel too: taken
        # off the buddy later, or never named again.
        later = [e for e in events if e.lineno > r.lineno and e.pfn == r.predicted_pfn]
        assert not later or later[0].name == MM_PAGE_ALLOC_ZONE_LOCKED


def test_untraced_buddy_removal():
    # 7.2 2-CPU pressure-tmpfs: softirq frees the model sent to the buddy
    # (pcp lock held) came out of the kernel's pcp with no zone_locked.
    name = "7.2-2cpu-pressure-tmpfs"
    _, events = _recording(name)
    found = _labelled(_replay(name), "untraced_buddy_removal")
    if not found:
        pytest.skip("no untraced_buddy_removal miss left on this recording")
    for r in found:
        named = [e for e in events if e.lineno < r.lineno and e.pfn == r.actual_pfn]
        assert named and named[-1].name in FREES + (MM_PAGE_PCPU_DRAIN,)
        assert named[-1].in_interrupt


# -- task_moved_after_take -----------------------------------------------------------------------
def test_task_moved_after_take():
    # 7.2 2-CPU memcg: dd refills CPU0's pcp (its zone_locked events held
    # there, 252 of them); softirq frees run on its stack, then ksoftirqd,
    # and dd's mm_page_alloc of the refill's first page is traced on CPU1,
    # where the scheduler moved it. One miss, predicted for CPU1; the refill
    # is applied to CPU0's pcp, where ksoftirqd then drains it: no drain of
    # a page the model holds free, no removal of one it holds taken (251 and
    # 126 contradictions, all after this miss, when the refill stayed held).
    name = "7.2-2cpu-memcg"
    _, events = _recording(name)
    rep = _replay(name)
    [r] = _labelled(rep, "task_moved_after_take")
    alloc = next(e for e in events if e.lineno == r.lineno)
    takes = [e for e in events if e.name == MM_PAGE_ALLOC_ZONE_LOCKED and e.pid == alloc.pid
             and e.lineno < r.lineno and e.cpu != alloc.cpu]
    assert takes and takes[-252].pfn == alloc.pfn == r.actual_pfn
    assert not [e for e in _between(events, takes[-1].lineno, r.lineno) if e.pid == alloc.pid
                and e.cpu == alloc.cpu]
    assert r.cpu == alloc.cpu == 1 and takes[-1].cpu == 0
    assert rep.moved_takes == 1 and rep.longest_miss_run == 1
    assert not {"drain_of_free_page", "buddy_removal_of_page_not_free"} & set(rep.contradictions)


def test_a_drain_that_passes_a_list_shows_its_pages_gone():
    # 7.2 2-CPU memcg: dd takes 0x3e800, the head of CPU0's MOVABLE pcp
    # list (its refill put it there at line 23809), and its mm_page_alloc is
    # traced 1,570 lines later (line 25379), after softirq frees on its own
    # stack ('.Bs..') and ksoftirqd's, and their drains. free_pcppages_bulk
    # empties a list before it turns to the next: the first drain (lines
    # 24548-25133) takes 0x3e802 and 0x3e801 off that list, then goes on to
    # the next one; 0x3e800 was no longer there.
    # Taken off the model's list as gone untraced, it no longer makes the
    # model foresee drains one free early (35 of 41 drain sets were exact),
    # and dd's late trace of it is still a hit.
    name = "7.2-2cpu-memcg"
    _, events = _recording(name)
    rep = _replay(name)
    drain = [e for e in events if e.name == MM_PAGE_PCPU_DRAIN and 24548 <= e.lineno < 25134]
    at = [e.pfn for e in drain].index(0x3e801)
    assert [e.pfn for e in drain[at - 1:at + 1]] == [0x3e802, 0x3e801]
    assert (drain[at].migratetype, drain[at + 1].migratetype) == (1, 2)
    assert all(e.pid == 300 and e.in_interrupt for e in drain)
    assert 0x3e800 not in [e.pfn for e in drain]
    assert rep.contradictions["pcp_pages_gone_at_drain"] == 1
    late = next(r for r in rep.records if r.lineno == 25379)
    assert late.actual_pfn == 0x3e800 and late.hit
    assert rep.drains_exact >= rep.drains - 1 and rep.drains >= 35


def test_a_boost_kswapd_reclaimed_for_is_no_run_of_zone_misses():
    # 7.2, 4 vCPUs, 1.5 GiB (pressure-tmpfs.sh, a helper's fresh recording):
    # a fallback at line 6655 boosts DMA32's watermarks by a pageblock
    # (boost_watermark); kswapd's balance_pgdat (lines 6681-6703) reclaims
    # for it and takes it off at its end. The model kept it: from line 9012
    # DMA32 failed its boosted low mark in the model and 722 allocations in
    # a row were predicted from DMA (83.84 %). Now no miss as recorded, and
    # one zone miss without the reclaim kprobes (where it shows the boost
    # gone: DMA32 passes without it).
    from buddyscope.model.events import RECLAIM_EVENTS

    name = "7.2-4cpu-pressure-tmpfs"
    _, events = _recording(name)
    by_line = {e.lineno: e for e in events}
    assert by_line[6655].name == MM_PAGE_ALLOC_EXTFRAG and by_line[6655].fallback_order == 8
    assert (by_line[6681].name, by_line[6703].name) == RECLAIM_EVENTS
    assert _replay(name).accuracy == 1.0
    rep = _replay(name, drop_names=RECLAIM_EVENTS)
    assert rep.longest_miss_run <= 1 and rep.accuracy >= 0.999
    assert set(rep.reasons) == {"zone"}


def test_an_idle_cpu_folds_its_vmstat_deltas():
    # The same recording. NR_FREE_PAGES as the watermark checks read it
    # (zone_page_state) lags by each CPU's unfolded vm_stat_diff; a CPU
    # whose tick stops in idle folds its own (quiet_vmstat ->
    # refresh_cpu_vm_stats(false), tick_nohz_stop_tick), with no event
    # unless record's kprobe on refresh_cpu_vm_stats is there (it was not
    # yet). An event of a CPU's idle task (pid 0: a softirq free on an idle
    # CPU) after one of a task shows the CPU went idle in between: replay
    # folds its deltas there. Without that, CPU 0's -16 pages of DMA32 stay
    # unfolded: two zone misses (DMA32 passed its low mark in the model, not
    # in the kernel, lines 7537 and 14452), and ZONE_BELOW_HIGH cleared one
    # drain too early (the kernel drained again at line 7961).
    import dataclasses

    name = "7.2-4cpu-pressure-tmpfs"
    fx, events = _recording(name)
    idle = [e for e in events if e.pid == 0]
    assert {e.cpu for e in idle} == {0, 1, 2, 3} and all(e.comm == "<idle>" for e in idle)
    rep = _replay(name)
    assert rep.allocations == 4475 and rep.hits == 4475
    assert (rep.drains_exact, rep.drains) == (55, 55)
    # The idle task's events under another pid: no fold is inferred.
    hidden = [dataclasses.replace(e, pid=99999) if e.pid == 0 else e for e in events]
    rep = replay(fx.snapshot, hidden, events_enabled=fx.provenance["events_enabled"])
    assert [(r.lineno, r.reason) for r in rep.misses()] == [(7537, "zone"), (14452, "zone")]
    assert (rep.drains_exact, rep.drains) == (53, 57)


def test_traced_vmstat_refreshes_fold_the_cpu_s_deltas():
    # 5.10, 2 vCPUs, compact-memory.sh (a helper's fresh recording, with
    # record's kprobe on refresh_cpu_vm_stats): quiet_vmstat's folds come
    # from the idle task (do_pagesets 0), vmstat_update's from the CPU's
    # kworker (1). At each, that CPU's deltas of every zone go into the
    # zone counters, and the other CPU's stay.
    name = "5.10-2cpu-compact-memory"
    fx, events = _recording(name)
    assert "refresh_cpu_vm_stats" in fx.provenance["events_enabled"]
    refresh = [(e.lineno, e.cpu, e.comm, e.count) for e in events if e.name == "refresh_cpu_vm_stats"]
    assert refresh == [(1147, 0, "<idle>", 0), (1180, 1, "kworker/1:1", 1),
                       (15652, 0, "kworker/0:1", 1), (50730, 1, "<idle>", 0)]
    r = Replayer(fx.snapshot, events_enabled=fx.provenance["events_enabled"])
    [dma32] = [z for z in r.alloc.zones if z.name == "DMA32"]
    diffs = {}
    r.after_event = lambda i, e: diffs.__setitem__(e.lineno, list(dma32.vm_diff))
    rep = r.run(events)
    assert diffs[1146][0] and diffs[1147][0] == 0
    assert diffs[15651] == [-7, 9] and diffs[15652] == [0, 9]
    assert diffs[50729][1] == 9 and diffs[50730][1] == 0
    assert rep.hits == rep.allocations == 1149


def test_zone_below_high_is_cleared_once_its_drain_is_done():
    # The same recording. kcompactd's free at line 17960 (CPU 2) drains 238
    # pages (lines 17961-18199: free_frozen_page_commit's to_free loop);
    # CPU 1 allocates at line 18107 in the middle, DMA32 still below its
    # high mark. ZONE_BELOW_HIGH is cleared by the commit's check after the
    # drain (7.2 L2914), on the count the drain left. Made at the free, the
    # check came before CPU 1's allocation set the flag again: the model
    # kept it, and foresaw a drain at CPU 1's free at line 18424 (count
    # 1750 >= high_min) that the kernel did not make.
    name = "7.2-4cpu-pressure-tmpfs"
    fx, events = _recording(name)
    by_line = {e.lineno: e for e in events}
    assert (by_line[17960].name, by_line[17960].cpu, by_line[18107].cpu) == ("mm_page_free", 2, 1)
    assert all(by_line[n].name == MM_PAGE_PCPU_DRAIN and by_line[n].cpu == 2
               for n in range(17961, 18200) if n != 18107)
    r = Replayer(fx.snapshot, events_enabled=fx.provenance["events_enabled"])
    [dma32] = [z for z in r.alloc.zones if z.name == "DMA32"]
    flag = {}
    r.after_event = lambda i, e: flag.__setitem__(e.lineno, dma32.below_high)
    rep = r.run(events)
    # Set through the drain, cleared at its end (its window closes at CPU
    # 2's next event), and every free drain set exact.
    assert flag[18107] and flag[18199] and not flag[18200] and not flag[18424]
    assert rep.drains_exact == rep.drains == 55


def test_a_zone_the_kernel_passed_over_is_below_high():
    # 6.12, 2 vCPUs, 512 MiB, compact-memory.sh (a helper's fresh
    # recording). THP faults get their block from their direct compaction
    # (compaction_capture: no removal event): their first attempts found no
    # order-9 block in DMA32 nor DMA, and each check there set
    # ZONE_BELOW_HIGH (get_page_from_freelist, 6.12 L3475). The model holds
    # the block free already, predicts its PFN from the buddy, and a
    # prediction whose path is not the kernel's is undone: the flag was
    # lost. Without it the THP pcp list kept the huge pages the kernel
    # drained at lines 16074-16076 (nr_pcp_high with the flag: count >=
    # high_min drains): 18 of 21 free drain sets were exact.
    name = "6.12-2cpu-compact-memory"
    fx, events = _recording(name)
    r = Replayer(fx.snapshot, events_enabled=fx.provenance["events_enabled"])
    [dma32] = [z for z in r.alloc.zones if z.name == "DMA32"]
    flag = {}
    r.after_event = lambda i, e: flag.__setitem__(e.lineno, dma32.below_high)
    rep = r.run(events)
    captured = [x.lineno for x in rep.records if x.actual_path == "capture" and x.order == 9]
    assert captured == [7682, 10408, 13191, 15974]
    drained = [e for e in events if 16074 <= e.lineno <= 16076]
    assert all(e.name == MM_PAGE_PCPU_DRAIN and e.order == 9 for e in drained)
    assert flag[16073]
    assert rep.hits == rep.allocations == 623 and rep.drains_exact == rep.drains == 21


def test_free_under_pcp_lock():
    # 7.2 1-CPU memcg (a helper's fresh recording): 13 softirq frees (the
    # 's' in the flags, preempt count 2) on top of the workload's task,
    # which may have held its pcp lock where no event shows it
    # (free_frozen_page_commit, a refill-less rmqueue_pcplist). Replay puts
    # them on the pcp as traced; the kernel's next UNMOVABLE pick, 0x82d9,
    # lies behind all of them on that list: their pcp_spin_trylock had
    # failed and free_one_page sent them to the buddy. One miss; replay
    # then frees them there in the order they were freed, and the refill
    # that later takes them off the buddy is exact.
    name = "7.2-1cpu-memcg"
    _, events = _recording(name)
    rep = _replay(name)
    [r] = _labelled(rep, "free_under_pcp_lock")
    assert r.lineno == 441 and r.actual_pfn == 0x82d9
    frees = [e for e in events if 427 <= e.lineno <= 439]
    assert len(frees) == 13 and all(e.name in FREES and e.in_interrupt and e.flags[2] == "s"
                                    and e.preempt_depth == 2 and e.pid == 287 for e in frees)
    assert r.predicted_pfn == frees[-1].pfn
    assert rep.contradictions["free_to_buddy_pcp_locked_inferred"] == 13
    assert rep.refills_exact == rep.refills >= 160 and rep.longest_miss_run == 1


# -- every label ----------------------------------------------------------------------------------
PROVEN = {
    "bulk_allocator", "pcp_taken_untraced", "alloc_traced_late", "free_traced_before_alloc",
    "alloc_in_flight_at_snapshot", "page_not_free_in_model", "compaction", "zone",
    "watermarks_untraced", "take_before_stall",
    "buddy_list_order", "untraced_buddy_removal", "pcp_list_order", "task_moved_after_take",
    "free_under_pcp_lock",
}
#: Labels no committed recording, whole or cut, produces: each names a
#: model error with no event behind it, kept so that such a miss says so.
JUSTIFIED = {
    # The kernel refilled where the model had pcp pages, or served from a
    # pcp list the model had empty, with no event to say why: the count
    # drifted through a path with no event.
    "pcp_empty_in_kernel", "pcp_nonempty_in_kernel",
    # The block was on another CPU's pcp in the model: a task migrating
    # between its take and its mm_page_alloc (traced with preemption on).
    "other_pcp_list",
    # The model found no page where the kernel did: no committed recording
    # runs a zone that low (a held-out 4-vCPU one does: issue 12's 4-CPU
    # work, not committed).
    "model_failed",
    # A fallback the model took differently. Every fallback of the
    # recordings is predicted exactly; the fallback misses seen came from
    # compaction (7.2 pressure-tmpfs) or an untraced bulk call, and are
    # labelled so (tests above).
    "fallback",
}


def test_every_label_is_proven_or_justified():
    assert PROVEN | JUSTIFIED == set(REASONS)
    assert not PROVEN & JUSTIFIED


# -- traces without the bulk kprobes: the other misses do not hide among them ---------------
@pytest.mark.parametrize("name", ["6.1-2cpu-fork-exec", "6.1-2cpu-tmpfs-write",
                                  "6.12-2cpu-fork-exec", "6.12-2cpu-pressure-compact"])
def test_without_bulk_kprobes_other_misses_stay_within_target(name):
    # Issue 12's target: misses other than bulk_allocator <= 0.05 %; and no
    # miss the bulk events would not have avoided is labelled bulk_allocator
    # (each is a hit with them).
    whole = _replay(name)
    rep = _replay(name, drop_names=BULK_EVENTS)
    other = [r for r in rep.misses() if r.reason != "bulk_allocator"]
    assert len(other) <= 0.0005 * rep.allocations
    assert {r.lineno for r in other} <= {r.lineno for r in whole.misses()}
    assert all(whole.records[r.index].hit for r in _labelled(rep, "bulk_allocator"))
    assert rep.longest_miss_run <= 2
