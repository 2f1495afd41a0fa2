"""Compaction on real traces: the two compact-memory recordings (a 6.1 and a
7.2 guest, 2 vCPUs, 512 MiB; fixtures/workloads/compact-memory.sh) traced
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
    MM_PAGE_FREE, MM_PAGE_PCPU_DRAIN,
)
from buddyscope.model.replay import Replayer

import recorded

NAMES = ["6.1-2cpu-compact-memory", "7.2-2cpu-compact-memory"]
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


@pytest.mark.parametrize("name", NAMES)
def test_the_ranges_give_the_blocks_the_kprobes_show(name):
    fx, events = recorded.fixture(name), recorded.events(name)
    truth = _kprobe_blocks(fx, events)
    rep, applied = _without_isolate_kprobes(fx, events)
    assert len(truth) >= 200
    # Every range replay applied took exactly the kprobes' blocks; where
    # the model's free blocks had gone stale (the fast search took pages
    # that no tracepoint names), nothing is guessed: counted and marked.
    assert all(sorted(applied[ln]) == truth[ln] for ln in applied)
    right = [ln for ln in truth if sorted(applied.get(ln, [])) == truth[ln]]
    assert len(right) >= 0.85 * len(truth)
    missed = [ln for ln in truth if ln not in right]
    assert 0 < len(missed) <= rep.contradictions["isolated_range_not_in_model"] + \
        rep.contradictions["isolated_range_ambiguous"]
    # Most pages the kprobes show are isolated from the tracepoints alone.
    whole = recorded.replayed(name)
    assert whole.isolated_pages > 15000
    assert rep.isolated_pages >= 0.75 * whole.isolated_pages
    # And the replay hits where it hits with the kprobes.
    assert [r.hit for r in rep.records] == [r.hit for r in whole.records]


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
    assert rep.drains_exact == rep.drains
    assert rep.inferred_reclaim == rep.silent_decays == 0
    events = recorded.events(name)
    assert sum(e.name == MM_PAGE_PCPU_DRAIN for e in events) > 1000
