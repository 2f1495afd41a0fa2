"""Compaction on real traces: the three compact-memory recordings (6.1 and
7.2 guests with 2 vCPUs and 512 MiB, a 6.12 one with 4 vCPUs and 1 GiB;
fixtures/workloads/compact-memory.sh) traced
both the ``__isolate_free_page`` kprobes, which name every block
compaction's free scanner took, and the compaction tracepoints, which give
ranges and counts. Without the kprobes, replay derives the blocks from the
tracepoints: checked here against what the kprobes show. And what else
compaction does with no event of its own: the block it captures for the
compacting task, the pcp it empties (drain_local_pages)."""

import collections

import pytest

from buddyscope.model.events import (
    ISOLATE_EVENTS, MM_COMPACTION_ISOLATE_FREEPAGES, MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE, MM_PAGE_PCPU_DRAIN, WATERMARK_EVENTS,
)
from buddyscope.model.replay import Replayer

import recorded

NAMES = ["6.1-2cpu-compact-memory", "7.2-2cpu-compact-memory"]
ALL = NAMES + ["6.12-4cpu-compact-memory"]
ISOLATE, ISOLATE_RET = ISOLATE_EVENTS


def _kprobe_blocks(fx, events):
    """For each mm_compaction_isolate_freepages line: the blocks (pfn,
    order) the kprobes show taken in its range on its CPU since the range
    before it there."""
    k = fx.snapshot.kernel
    entry, taken, truth = {}, collections.defaultdict(list), {}
    for e in events:
        if e.name == ISOLATE:
            entry[e.cpu] = e
        elif e.name == ISOLATE_RET:
            en = entry.pop(e.cpu, None)
            if en is not None and e.count:
                taken[e.cpu].append(((en.count - k.vmemmap) // k.sizeof_page, en.order))
        elif e.name == MM_COMPACTION_ISOLATE_FREEPAGES:
            truth[e.lineno] = sorted(t for t in taken.pop(e.cpu, []) if e.start_pfn <= t[0] < e.end_pfn)
    return truth


def _without_isolate_kprobes(fx, events):
    """Replay with the isolate kprobe events taken out (as a trace recorded
    without them): the blocks it isolated, by the line that named them."""
    kept = [e for e in events if e.name not in ISOLATE_EVENTS]
    r = Replayer(fx.snapshot, events_enabled=[n for n in fx.provenance["events_enabled"]
                                              if n not in ISOLATE_EVENTS])
    applied = collections.defaultdict(list)
    isolate_block = r._isolate_block

    def spy(e, pfn, order):
        applied[e.lineno].append((pfn, order))
        isolate_block(e, pfn, order)
    r._isolate_block = spy
    return r.run(kept), applied


@pytest.mark.parametrize("name", ALL)
def test_the_ranges_give_the_blocks_the_kprobes_show(name):
    fx, events = recorded.fixture(name), recorded.events(name)
    truth = _kprobe_blocks(fx, events)
    rep, applied = _without_isolate_kprobes(fx, events)
    took = [ln for ln in truth if truth[ln]]
    assert len(truth) >= 200 and len(took) >= 130
    # Every range replay applied took exactly the kprobes' blocks; where
    # the model's free blocks had gone stale (the fast search took pages
    # that no tracepoint names), nothing is guessed: counted and marked.
    assert all(sorted(applied[ln]) == truth[ln] for ln in applied if ln in truth)
    right = [ln for ln in took if sorted(applied.get(ln, [])) == truth[ln]]
    assert len(right) >= 0.8 * len(took)
    missed = [ln for ln in truth if sorted(applied.get(ln, [])) != truth[ln]]
    assert 0 < len(missed) <= rep.contradictions["isolated_range_not_in_model"] + \
        rep.contradictions["isolated_range_ambiguous"]
    # Most pages the kprobes show are isolated from the tracepoints alone.
    whole = recorded.replayed(name)
    assert whole.isolated_pages > 13000
    assert rep.isolated_pages >= 0.75 * whole.isolated_pages
    # Hits lost against the whole trace: few, and put down to what the
    # fast search took and rotated untraced (compaction, the list order),
    # or the free count it left the model (zone).
    lost = [r for r, w in zip(rep.records, whole.records) if w.hit and not r.hit]
    assert len(lost) <= 0.005 * rep.allocations
    assert {r.reason for r in lost} <= {"compaction", "buddy_list_order", "zone"}


@pytest.mark.parametrize("name", NAMES)
def test_captured_blocks_are_not_refills(name):
    # compaction_capture: the THP fault's order-9 block comes straight from
    # its direct compaction's free (no mm_page_alloc_zone_locked before the
    # mm_page_alloc), right after the task's frees of migrated pages.
    fx, events = recorded.fixture(name), recorded.events(name)
    rep = recorded.replayed(name)
    captured = [r for r in rep.records if r.actual_path == "capture"]
    assert rep.captures == len(captured) == 5
    by_line = {e.lineno: k for k, e in enumerate(events)}
    for r in captured:
        k = by_line[r.lineno]
        e = events[k]
        assert e.name == MM_PAGE_ALLOC and e.order == 9
        # The task's events since its allocation before: frees of the pages
        # it migrated, no take from the lists.
        mine = [x for x in events[:k] if x.pid == e.pid]
        since = mine[max(i for i, x in enumerate(mine) if x.name == MM_PAGE_ALLOC) + 1:]
        assert sum(x.name == MM_PAGE_FREE for x in since) >= 8
        assert not any(x.name == MM_PAGE_ALLOC_ZONE_LOCKED for x in since)


@pytest.mark.parametrize("name", NAMES)
def test_drain_local_pages_is_told_from_the_free_commit(name):
    # lru_add_drain_cpu_zone once the migration scanner leaves a block:
    # right after a free, the whole pcp goes back; not the free's commit,
    # and nothing to infer about pcp->high from it.
    rep = recorded.replayed(name)
    assert rep.whole_drains >= 5
    # Not scored as free drains; the free drains are all exact.
    assert rep.drains_exact == rep.drains >= 20
    assert rep.inferred_reclaim == rep.silent_decays == 0
    events = recorded.events(name)
    assert sum(e.name == MM_PAGE_PCPU_DRAIN for e in events) > 1000


def test_a_zone_skip_is_one_miss_not_a_run():
    # 6.12, 4 vCPUs, 1 GiB (compact-memory.sh): after kswapd's
    # balance_pgdat calls (lines 11332-11362) the kernel serves dd's order-0
    # MOVABLE faults from DMA's pcp list (0xc40, 0xc41, ...): it found DMA32
    # at or below its min watermark, where the model's NR_FREE_PAGES stood
    # 16 pages above (lagging per-CPU counters, 4 CPUs). One miss, labelled
    # zone; replay then takes the kernel's word for DMA32's count and the
    # 63 allocations after it are hits (they were a run of 64 misses).
    name = "6.12-4cpu-compact-memory"
    rep = recorded.replayed(name)
    by_line = {r.lineno: r for r in rep.records}
    miss = by_line[11364]
    assert (miss.hit, miss.reason, miss.predicted_zone) == (False, "zone", "DMA32")
    after = [r for r in rep.records if 11364 < r.lineno <= 11491]
    assert len(after) == 63 and all(r.hit for r in after)
    assert rep.counter_resyncs >= 1 and rep.longest_miss_run <= 1
    # Its other miss: a THP fault's block (0x36600, order 9) that its direct
    # compaction captured: no removal event before it, the task's frees of
    # migrated pages since its last allocation; the model could not know.
    capture = by_line[3035]
    assert (capture.hit, capture.actual_path, capture.reason) == (False, "capture", "compaction")
    assert capture.actual_pfn == 0x36600 and capture.order == 9
    assert rep.reasons == {"zone": 1, "compaction": 1}


def test_without_kprobes_a_wrong_inference_does_not_run_on():
    # The same trace without record's kprobes: THP's min_free_kbytes raise
    # is untraced and inferred from the first skip (every zone's watermarks
    # from one min_free_kbytes, as __setup_per_zone_wmarks sets them), and
    # compaction's isolation only partly traced by its tracepoints, so the
    # model holds more free pages than the kernel. The zone misses that
    # leaves are one or two apiece (it was 1,084 misses, a run of 1,011).
    from buddyscope.model.events import (
        BULK_EVENTS, DECAY_EVENTS, RECLAIM_EVENTS, WATERMARK_EVENTS)
    name = "6.12-4cpu-compact-memory"
    fx, events = recorded.fixture(name), recorded.events(name)
    kprobes = set(BULK_EVENTS + RECLAIM_EVENTS + DECAY_EVENTS + ISOLATE_EVENTS + WATERMARK_EVENTS)
    kept = [e for e in events if e.name not in kprobes]
    r = Replayer(fx.snapshot, events_enabled=[n for n in fx.provenance["events_enabled"]
                                              if n not in kprobes])
    rep = r.run(kept)
    assert rep.inferred_watermarks >= 1
    assert rep.longest_miss_run <= 2
    # The fast searches worked out from their tracepoint keep the lists
    # right, and the raise inferred is THP's own: 9 misses other than
    # bulk_allocator before, 6 with the searches, 5 with both.
    assert rep.fast_searches_resolved >= 100
    other = [m for m in rep.misses() if m.reason != "bulk_allocator"]
    assert len(other) <= 5, collections.Counter(m.reason for m in other)


def _kprobes_removed(fx, events, names):
    kept = [e for e in events if e.name not in names]
    return Replayer(fx.snapshot, events_enabled=[n for n in fx.provenance["events_enabled"]
                                                  if n not in names]), kept


@pytest.mark.parametrize("name", ["6.12-4cpu-compact-memory", "7.2-2cpu-compact-memory"])
def test_the_fast_search_gives_the_block_the_kprobes_show(name):
    # Replayed as recorded (the isolate kprobes keep the lists right), each
    # fast search is worked out from its tracepoint alone over the model's
    # lists as they were before it (before its own kprobe events), and
    # compared with the block its kprobes name.
    from buddyscope.model.compaction import fast_isolate_freepages
    from buddyscope.model.events import MM_COMPACTION_FAST_ISOLATE_FREEPAGES as FAST

    fx, events = recorded.fixture(name), recorded.events(name)
    k = fx.snapshot.kernel
    before, first = {}, {}
    for i, e in enumerate(events):
        if e.name == ISOLATE and e.cpu not in first:
            first[e.cpu] = (i, ((e.count - k.vmemmap) // k.sizeof_page, e.order))
        elif e.name == FAST:
            i0, block = first.pop(e.cpu, (i, None))
            before[i0 - 1] = (e, block if e.count else None)
        elif e.name == MM_COMPACTION_ISOLATE_FREEPAGES:
            first.pop(e.cpu, None)
    r = Replayer(fx.snapshot, events_enabled=fx.provenance["events_enabled"])
    seen = collections.Counter()

    def check(i, e):
        if i in before:
            fe, block = before[i]
            a = r.alloc
            found = fast_isolate_freepages(a, a.zone_of(fe.start_pfn).index, fe.start_pfn,
                                           fe.end_pfn, fe.nr_scanned, fe.count)
            seen["unresolved" if found is None else "right" if found.taken == block else "wrong"] += 1
    r.after_event = check
    r.run(events)
    total = sum(seen.values())
    assert total >= 280
    assert seen["right"] >= 0.99 * total
    # The kprobes rotate only the list a block was found on; a list the
    # search stopped on without a candidate is rotated untraced, and one
    # 7.2 search (line 8327) met a list so left: one block in 2,190 wrong.
    assert seen["wrong"] <= 1, seen


@pytest.mark.parametrize("name", ["6.1-2cpu-compact-memory", "6.12-2cpu-pressure-compact",
                                  "7.2-2cpu-compact-memory", "7.2-4cpu-compact-memory"])
def test_without_kprobes_thps_min_free_kbytes_is_inferred_as_the_kernel_set_it(name):
    # The workload turned THP on: set_recommended_min_free_kbytes raised
    # min_free_kbytes and setup_per_zone_wmarks set new watermarks and,
    # through zone_pcp_update, larger pcps (setup_wmarks, a kretprobe event).
    # Without it, the first free the model sees drain where the kernel
    # kept its pages (or the first zone the kernel skipped) shows the raise:
    # inferred as THP's, it gives the watermarks the kernel set, and the
    # free drains are predicted again (0.16 % of 13,431 exact on 7.2
    # before: every free after the raise looked like a drain). On 7.2 with
    # 4 vCPUs it shows the other way: the raise put DMA32 under its new
    # high watermark, ZONE_BELOW_HIGH came with the next allocation and the
    # kernel drained at the new high_min where the model had room (12/15
    # before, read as silent pcp->high decays).
    fx, events = recorded.fixture(name), recorded.events(name)
    whole = Replayer(fx.snapshot, events_enabled=fx.provenance["events_enabled"])
    whole.run(events)
    r, kept = _kprobes_removed(fx, events, set(WATERMARK_EVENTS))
    rep = r.run(kept)
    assert rep.inferred_watermarks == 1
    assert [z.watermarks for z in r.alloc.zones] == [z.watermarks for z in whole.alloc.zones]
    assert rep.drains_exact >= whole.report.drains - 1 and rep.drains <= whole.report.drains + 1


@pytest.mark.parametrize("name", ["6.1-1cpu-pressure-compact", "6.1-4cpu-pressure-compact",
                                  "6.12-2cpu-pressure-compact", "7.2-1cpu-pressure-compact"])
def test_one_min_free_kbytes_gives_every_zones_watermarks(name):
    # Turning THP on re-ran __setup_per_zone_wmarks; record's setup_wmarks
    # kretprobe event read back what it set. The model's
    # setup_per_zone_wmarks, from one pages_min (the one DMA32's new min
    # shows), gives every zone's min, low, high and promo exactly.
    import re

    from buddyscope.model.allocator import Allocator
    from buddyscope.model.events import WATERMARK_EVENTS

    fx, events = recorded.fixture(name), recorded.events(name)
    [e] = [e for e in events if e.name == WATERMARK_EVENTS[0]]
    fields = {(int(z), int(i)): int(v) for z, i, v in re.findall(r"z(\d+)w(\d)=(\d+)", e.gfp)}
    assert fields
    a = Allocator(fx.snapshot)
    by_idx = {z.zone_idx: z for z in a.zones if z.managed}
    dma32 = max(by_idx.values(), key=lambda z: z.managed)
    lowmem = sum(z.managed for z in by_idx.values())
    new_min = fields[(dma32.zone_idx, 0)]
    candidates = range(new_min * lowmem // dma32.managed - 2, new_min * lowmem // dma32.managed + 3)
    names = ("min", "low", "high", "promo")
    want = {zi: {names[i]: v for (z, i), v in fields.items() if z == zi} for zi in by_idx}
    got = []
    for p in candidates:
        a.setup_per_zone_wmarks(p)
        got.append({zi: {k: z.watermarks[k] for k in want[zi]} for zi, z in by_idx.items()})
    assert want in got


def test_a_list_rotated_untraced_is_one_miss():
    # 6.1: the fast free search rotated DMA32's order-0 MOVABLE list in a
    # call that took nothing (move_freelist_head: inlined, no event, no
    # kprobe). dd's refill at line 10675 starts at 0xe290, deep in the
    # model's list, and takes the pages after it in list order: one miss,
    # labelled buddy_list_order; replay rotates the list as the kernel had
    # it, and the four refills after it (lines 10737-10923, four misses
    # before) are hits.
    rep = recorded.replayed("6.1-2cpu-compact-memory")
    by_line = {r.lineno: r for r in rep.records}
    miss = by_line[10675]
    assert (miss.hit, miss.reason, miss.actual_pfn) == (False, "buddy_list_order", 0xe290)
    assert all(by_line[n].hit for n in (10737, 10799, 10861, 10923))
    assert rep.inferred_rotations >= 1


def test_a_capture_in_the_middle_of_a_drain_is_no_fallback():
    # 7.2, 4 vCPUs, 1 GiB (compact-memory.sh, recorded fresh by a helper):
    # dd compacts for a THP; after its free at line 970 compaction empties
    # the pcp (drain_local_pages, 2,711 drain events). In the middle of it
    # (line 1626) a merge completes an order-9 block in an UNMOVABLE
    # pageblock: compaction_capture (7.2 L728) hands it to dd and traces a
    # fallback (L751), under the zone lock. It is neither the end of the
    # drain nor a removal of dd's next allocation (line 3685, that block):
    # a capture, labelled compaction; the drain is one whole-pcp drain, and
    # every refill and free drain set is exact (the split had left a
    # "fallback" miss, a refill set and two drain sets wrong).
    name = "7.2-4cpu-compact-memory"
    events = recorded.events(name)
    [x] = [e for e in events if e.lineno == 1626]
    assert x.name == "mm_page_alloc_extfrag" and x.fallback_order == 9 and x.fallback_migratetype == 0
    around = [e for e in events if e.cpu == x.cpu and 1616 <= e.lineno <= 1636 and e is not x]
    assert around and all(e.name == MM_PAGE_PCPU_DRAIN and e.pid == x.pid for e in around)
    rep = recorded.replayed(name, enabled=True)
    [miss] = rep.misses()
    assert (miss.lineno, miss.actual_pfn, miss.actual_path, miss.reason) == (3685, x.pfn, "capture", "compaction")
    assert rep.refills_exact == rep.refills >= 19 and rep.drains_exact == rep.drains >= 16


def test_blocks_between_a_refills_takes_are_the_fast_searchs():
    # 6.1, 1 vCPU, 768 MiB (compact-memory.sh, a helper's fresh recording):
    # 6.1's fast free search has no tracepoint; without the isolate kprobes
    # the blocks it took stayed on the model's lists, and six refills took a
    # run of the list with two of them in the model's way (6 misses). Blocks
    # the model holds between two takes of one refill were not on the
    # kernel's list: with compaction at work, they are taken as isolated.
    # Each one so taken is a block the kprobes show compaction_alloc took.

    name = "6.1-1cpu-compact-memory"
    fx, events = recorded.fixture(name), recorded.events(name)
    k = fx.snapshot.kernel
    entry, fast = {}, set()
    for e in events:
        if e.name == ISOLATE:
            entry[e.cpu] = e
        elif e.name == ISOLATE_RET:
            en = entry.pop(e.cpu, None)
            if en is not None and e.count and e.gfp == "compaction_alloc":
                fast.add((en.count - k.vmemmap) // k.sizeof_page)
    r, kept = _kprobes_removed(fx, events, set(ISOLATE_EVENTS))
    found = []
    run_with_gaps = r.alloc.run_with_gaps

    def spy(pfns, order, most):
        out = run_with_gaps(pfns, order, most)
        found.extend(out or ())
        return out
    r.alloc.run_with_gaps = spy
    rep = r.run(kept)
    assert len(found) >= 10 and set(found) <= fast
    assert rep.contradictions["isolated_untraced_between_takes"] == len(found)
    assert len(rep.misses()) <= 1
