"""Properties of the allocator model (buddyscope.model.allocator) that hold
for any sequence of allocations and frees, checked with hypothesis on the
real starting states of the four lab kernels (the committed recordings'
snapshots ``<series>-1cpu-tmpfs-write`` and ``<series>-2cpu-fork-exec``).

- Pages are conserved: after any sequence of allocations (orders 0..3 and 9,
  migratetypes Unmovable/Movable/Reclaimable, any CPU, GFP_KERNEL-like or
  GFP_ATOMIC-like, which reserves highatomic pageblocks) and frees of blocks
  the test was handed (from any CPU), every page that was on a free list or a
  pcp list before is on exactly one free list, one pcp list, or in exactly
  one block the test holds; no page is in two places and no page appears from
  nowhere (pages outside the free and pcp lists -- holes, reserved pages,
  pages allocated before the snapshot -- are never touched).
- No two free buddies are left unmerged where ``__free_one_page`` would
  merge them: a free block of order o whose buddy ``pfn ^ (1 << o)`` is a
  free block of order o in the same zone is allowed only at
  o >= pageblock_order when the pageblocks' types refuse the merge (5.10:
  one of them ISOLATE, ``__free_one_page`` 5.10 L1047-1056; 6.1+: one of them
  not ``migratetype_is_mergeable``, 6.1 L1163, 6.12 L851, 7.2 L977).
- The counters agree with the lists: ``zone.nr_free[o]`` is the number of
  free blocks of order o, ``zone.free_pages`` the pages on every list but
  ISOLATE's (``account_freepages``), ``pcp.count`` the pages on the pcp lists.
- ``with alloc.trial():`` without ``commit()`` leaves the exact state (every
  list in order, pcp lists and members, zone counters, pageblock types); with
  ``commit()`` the state is the one the same operations make outside a trial.

Each property also runs from a "tight" variant of the state, every pcp's high
mark lowered to half its count, so that frees drain (``free_pcppages_bulk``
into ``__free_one_page``). Examples are derandomized: the default tier is
deterministic. Whether each path does what the kernel does is checked in
test_paths.py; these properties only check that the model's state stays whole.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buddyscope.model.allocator import (
    ALLOC_CMA,
    ALLOC_KSWAPD,
    ALLOC_NOFRAGMENT,
    ALLOC_WMARK_LOW,
    MIGRATE_PCPTYPES,
    ZONE_INDEX,
    Allocator,
)
from buddyscope.model.fixture import Fixture
from buddyscope.model.request import make_request

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
SERIES = ["5.10", "6.1", "6.12", "7.2"]
STARTS = [f"{s}-{w}" for s in SERIES for w in ("1cpu-tmpfs-write", "2cpu-fork-exec")]
ORDERS = [0, 1, 2, 3, 9]
NORMAL = ZONE_INDEX["Normal"]

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def _snapshot(name):
    return Fixture.load(RECORDINGS / f"{name}.json.gz").snapshot


def fresh(name, tight: bool = False) -> Allocator:
    """A model of the recording's starting state. *tight*: every pcp's high
    mark at half its count (high_min = high_max = high on 6.12+, as with
    ``percpu_pagelist_high_fraction``), so that frees drain."""
    # Allocator copies what it changes out of the snapshot, so one loaded
    # snapshot serves every example.
    alloc = Allocator(_snapshot(name))
    # walk() reads buddy, nxt and prv: every list in them from the start.
    alloc.link_all()
    if tight:
        for z in alloc.zones:
            for pcp in z.pcp.values():
                pcp.high = pcp.high_min = pcp.high_max = max(pcp.count // 2, 1)
    return alloc


# -- operations ---------------------------------------------------------------
# ("alloc", cpu, order, migratetype, nofragment, n, atomic): n allocations in
# a row, atomic ones with GFP_ATOMIC's slowpath alloc_flags (highatomic
# reserve and its pageblocks); ("free", which, cpu, n): n held blocks from
# the which-th on (in PFN order). The CPU and the held block are taken modulo
# what exists when the op runs.
ALLOC = st.tuples(st.just("alloc"), st.integers(0, 1), st.sampled_from(ORDERS),
                  st.integers(0, 2), st.booleans(),
                  st.one_of(st.just(1), st.integers(1, 4), st.integers(1, 100)),
                  st.sampled_from((False, False, False, True)))
FREE = st.tuples(st.just("free"), st.integers(0, 1 << 16), st.integers(0, 1),
                 st.one_of(st.just(1), st.integers(1, 4), st.integers(1, 150)))
OPS = st.lists(st.one_of(ALLOC, FREE), min_size=1, max_size=30)


def fast_flags(alloc: Allocator, mt: int, nofragment: bool) -> int:
    """The fast path's alloc_flags of a GFP_KERNEL-like request
    (``prepare_alloc_pages`` + ``alloc_flags_nofragment``)."""
    flags = ALLOC_WMARK_LOW | ALLOC_KSWAPD
    if alloc.MIGRATE_CMA is not None and mt == 1:
        flags |= ALLOC_CMA
    if nofragment:
        flags |= ALLOC_NOFRAGMENT
    return flags


def atomic_flags(alloc: Allocator, order: int, mt: int) -> int:
    """GFP_ATOMIC's slowpath alloc_flags (``gfp_to_alloc_flags``), used
    as the first attempt's."""
    gfp = "GFP_ATOMIC" + ("", "|__GFP_MOVABLE", "|__GFP_RECLAIMABLE")[mt]
    return make_request(alloc, order, gfp=gfp).slow_flags


def run(alloc: Allocator, ops, held: dict) -> None:
    """Apply *ops*; *held* (head PFN -> (order, migratetype)) is what the
    test holds, updated in place."""
    for op in ops:
        if op[0] == "alloc":
            _, cpu, order, mt, nofrag, n, atomic = op
            flags = atomic_flags(alloc, order, mt) if atomic else fast_flags(alloc, mt, nofrag)
            for _ in range(n):
                out = alloc.allocate(cpu % alloc.nr_cpus, order, mt, NORMAL, flags)
                if out.pfn is None:
                    break
                assert out.order == order
                assert out.pfn % (1 << order) == 0, "a block is aligned to its order"
                assert out.pfn not in held, f"{out.pfn:#x} handed out twice"
                held[out.pfn] = (order, mt)
        elif held:
            _, which, cpu, n = op
            pfns = sorted(held)
            start = which % len(pfns)
            for pfn in pfns[start:start + n]:
                order, _ = held.pop(pfn)
                alloc.free(cpu % alloc.nr_cpus, pfn, order)


# -- walking the state --------------------------------------------------------
def walk(alloc: Allocator, held: dict):
    """Walk every free list and pcp list; check each against the index dicts
    and the counters; return the blocks as sorted (start, end, where)."""
    blocks = []
    seen_free = set()
    for z in alloc.zones:
        zi = z.index
        nr_free = [0] * alloc.nr_orders
        free_pages = cma = highatomic = 0
        for o in range(alloc.nr_orders):
            for mt in range(alloc.nr_mt):
                s = alloc.sentinel(zi, o, mt)
                prev, p = s, alloc.nxt[s]
                while p != s:
                    assert alloc.prv[p] == prev, f"broken back link at {p:#x}"
                    assert p not in seen_free, f"{p:#x} on two free lists"
                    seen_free.add(p)
                    assert alloc.buddy.get(p) == (o, mt, zi), (
                        f"{p:#x} on {z.name} free_list[{o}][{mt}] but indexed as {alloc.buddy.get(p)}")
                    assert p % (1 << o) == 0, f"free block {p:#x} not aligned to order {o}"
                    assert z.start_pfn <= p and p + (1 << o) <= z.end_pfn, f"{p:#x}/{o} outside {z.name}"
                    blocks.append((p, p + (1 << o), f"free {z.name} o{o} mt{mt}"))
                    nr_free[o] += 1
                    if mt != alloc.MIGRATE_ISOLATE:
                        free_pages += 1 << o
                        if mt == alloc.MIGRATE_CMA:
                            cma += 1 << o
                        elif mt == 3:
                            highatomic += 1 << o
                    prev, p = p, alloc.nxt[p]
                assert alloc.prv[s] == prev
        assert z.nr_free == nr_free, f"{z.name} nr_free {z.nr_free} but the lists hold {nr_free}"
        assert z.free_pages == free_pages, f"{z.name} free_pages {z.free_pages}, lists {free_pages}"
        assert z.cma_free == cma
        assert z.nr_free_highatomic == highatomic
        for cpu, pcp in z.pcp.items():
            count = 0
            for pindex, lst in enumerate(pcp.lists):
                o = alloc.pindex_order[pindex]
                for p in lst:
                    assert alloc.on_pcp.get(p) == (zi, cpu, pindex), (
                        f"{p:#x} on cpu {cpu} {z.name} lists[{pindex}] but indexed {alloc.on_pcp.get(p)}")
                    assert p % (1 << o) == 0
                    assert z.start_pfn <= p and p + (1 << o) <= z.end_pfn
                    blocks.append((p, p + (1 << o), f"pcp {z.name} cpu{cpu} [{pindex}]"))
                    count += 1 << o
            assert pcp.count == count, f"{z.name} cpu {cpu} pcp count {pcp.count}, lists {count}"
    assert seen_free == set(alloc.buddy), "free index and free lists disagree"
    assert sum(len(l) for z in alloc.zones for p in z.pcp.values() for l in p.lists) == len(alloc.on_pcp)
    for pfn, (order, _) in held.items():
        blocks.append((pfn, pfn + (1 << order), "held"))
    blocks.sort()
    for a, b in zip(blocks, blocks[1:]):
        assert a[1] <= b[0], f"{a[2]} [{a[0]:#x}, {a[1]:#x}) overlaps {b[2]} [{b[0]:#x}, {b[1]:#x})"
    return blocks


def coverage(blocks):
    """The blocks' pages as merged [start, end) ranges."""
    out = []
    for start, end, _ in blocks:
        if out and out[-1][1] == start:
            out[-1][1] = end
        else:
            out.append([start, end])
    return out


def merge_refused(alloc: Allocator, mt: int, buddy_mt: int) -> bool:
    """Whether ``__free_one_page`` refuses to merge blocks of pageblock types
    *mt* and *buddy_mt* at order >= pageblock_order."""
    if mt == buddy_mt:
        return False
    if alloc.profile.merge == "isolate":
        # 5.10 L1047-1056: only against ISOLATE (has_isolate_pageblock).
        return alloc.MIGRATE_ISOLATE in (mt, buddy_mt)
    # 6.1 L1163 / 6.12 L851 / 7.2 L977: !migratetype_is_mergeable (mt >= PCPTYPES).
    return mt >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES


def unmerged_buddies(alloc: Allocator):
    bad = []
    max_order = alloc.nr_orders - 1
    for pfn, (o, _, zi) in alloc.buddy.items():
        if o >= max_order:
            continue
        b = pfn ^ (1 << o)
        info = alloc.buddy.get(b)
        if pfn > b or info is None or info[0] != o or info[2] != zi:
            continue
        z = alloc.zones[zi]
        if o >= alloc.pageblock_order and merge_refused(
                alloc, alloc.pageblock_mt_of(z, pfn), alloc.pageblock_mt_of(z, b)):
            continue
        bad.append((z.name, hex(pfn), hex(b), o))
    return bad


def state(alloc: Allocator):
    """Everything an operation may change, in comparable form."""
    zones = []
    for z in alloc.zones:
        lists = {(o, mt): alloc.free_list(z.index, o, mt)
                 for o in range(alloc.nr_orders) for mt in range(alloc.nr_mt)}
        pcps = {cpu: ([list(l) for l in p.lists],
                      {name: getattr(p, name) for name in p.__slots__ if name != "lists"})
                for cpu, p in z.pcp.items()}
        fields = {name: getattr(z, name) for name in z.__slots__ if name != "pcp"}
        fields = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                  for k, v in fields.items()}
        zones.append((lists, pcps, fields))
    return (zones, dict(alloc.buddy), dict(alloc.on_pcp), dict(alloc.pcp_mt),
            dict(alloc.allocated), dict(alloc.nxt), dict(alloc.prv))


# -- the properties -----------------------------------------------------------
def test_starting_states_hold_the_invariants():
    """The helpers' own baseline: the kernel's states satisfy what the
    properties demand of the model's."""
    for name in STARTS:
        alloc = fresh(name)
        walk(alloc, {})
        assert unmerged_buddies(alloc) == [], name


@pytest.mark.parametrize("name", STARTS)
@SETTINGS
@given(ops=OPS, tight=st.booleans())
def test_pages_are_conserved_and_merged(name, ops, tight):
    alloc = fresh(name, tight)
    before = coverage(walk(alloc, {}))
    held: dict = {}
    run(alloc, ops, held)
    after = walk(alloc, held)   # also: no page in two places, counters agree
    assert coverage(after) == before, "pages appeared or vanished"
    assert unmerged_buddies(alloc) == [], "free buddies left unmerged"
    # The model's own record of what it handed out is what the test holds.
    assert alloc.allocated == held


@pytest.mark.parametrize("name", STARTS)
@SETTINGS
@given(prefix=st.lists(ALLOC, max_size=8), ops=OPS, tight=st.booleans())
def test_trial_without_commit_restores_the_state(name, prefix, ops, tight):
    alloc = fresh(name, tight)
    held: dict = {}
    run(alloc, prefix, held)
    want = state(alloc)
    with alloc.trial():
        run(alloc, ops, dict(held))
    assert alloc.journal is None
    assert state(alloc) == want


@pytest.mark.parametrize("name", [f"{s}-2cpu-fork-exec" for s in SERIES])
@settings(SETTINGS, max_examples=25)
@given(prefix=st.lists(ALLOC, max_size=8), ops=OPS, tight=st.booleans())
def test_trial_with_commit_is_the_plain_run(name, prefix, ops, tight):
    plain, tried = fresh(name, tight), fresh(name, tight)
    held_plain: dict = {}
    held_tried: dict = {}
    run(plain, prefix + ops, held_plain)
    run(tried, prefix, held_tried)
    with tried.trial():
        run(tried, ops, held_tried)
        tried.commit()
    assert state(tried) == state(plain)
    assert held_tried == held_plain
