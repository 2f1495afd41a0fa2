"""Each allocator path of the model (buddyscope.model.allocator) on small
hand-built states, checked against what the kernel function it mirrors does.

Every expectation below was worked out by hand from the Debian source of the
lab kernel (``~/.cache/buddyscope/src/<series>/mm/page_alloc.c``); the
comment on each test names the function, series and line. The states are
minimal snapshots: the ``kernel`` of a real recording of the series (so the
pcp list layout, migratetypes and type features are the kernel's own, and
the profile is detected as for a real snapshot) and one zone ``DMA32`` of a
few pageblocks with chosen free lists, pcp lists and pageblock types.

PFNs are picked so that no two free blocks are buddies unless a test wants a
merge. Pages that are on no list were allocated before the snapshot.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest

from buddyscope.model.allocator import (
    ALLOC_HIGHATOMIC,
    ALLOC_KSWAPD,
    ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS,
    ALLOC_NON_BLOCK,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MIN,
    ZONE_INDEX,
    Allocator,
)
from buddyscope.model.fixture import Fixture
from buddyscope.model.request import make_request
from buddyscope.model.snapshot import Capture, FreeArea, Pcp, Snapshot, Zone

RECORDINGS = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
SERIES = ["5.10", "6.1", "6.12", "7.2"]
U, M, R, H = 0, 1, 2, 3          # enum migratetype
BASE = 0x1000                    # DMA32's first PFN: 2^10-aligned
PB = 512                         # pageblock_nr_pages of every lab kernel
NORMAL = ZONE_INDEX["Normal"]
FAST = ALLOC_WMARK_LOW | ALLOC_KSWAPD   # a GFP_KERNEL fast-path attempt


@functools.lru_cache(maxsize=None)
def _kernel(series):
    return Fixture.load(RECORDINGS / f"{series}-1cpu-tmpfs-write.json.gz").snapshot.kernel


def build(series, pageblocks, free=(), pcp=None, **kw) -> Allocator:
    """The model of :func:`build_snapshot`'s snapshot."""
    alloc = Allocator(build_snapshot(series, pageblocks, free, pcp, **kw))
    assert alloc.profile.name == series
    return alloc


def build_snapshot(series, pageblocks, free=(), pcp=None, *, batch=31, high=186,
                   pcp_fields=None, watermarks=(0, 0, 0), boost=0, managed=None,
                   reserved_highatomic=0) -> Snapshot:
    """A one-CPU snapshot of zone DMA32 with *pageblocks* (types, from BASE);
    *free*: (pfn, order, migratetype) in list order, head first; *pcp*:
    {(order, migratetype): [pfn, ...]} head first, on cpu 0."""
    k = copy.deepcopy(_kernel(series))
    k.nr_cpus = 1
    nr_mt = len(k.migratetypes)
    areas = [[[] for _ in range(nr_mt)] for _ in range(k.nr_page_orders)]
    for pfn, order, mt in free:
        areas[order][mt].append(pfn)
    free_area = [FreeArea(sum(map(len, by_mt)), by_mt) for by_mt in areas]
    pindex = {(pl.order, mt): i for i, pl in enumerate(k.pcp_lists) for mt in pl.migratetypes}
    pcp_pfns = [[] for _ in k.pcp_lists]
    for key, pfns in (pcp or {}).items():
        pcp_pfns[pindex[key]].extend(pfns)
    count = sum(len(l) << k.pcp_lists[i].order for i, l in enumerate(pcp_pfns))
    # The members each series' struct per_cpu_pages has (detect_profile reads them).
    if series == "5.10":
        fields = {}
    elif series == "6.1":
        fields = {"free_factor": 0, "expire": 0}
    else:
        fields = {"high_min": high, "high_max": high, "flags": 0, "alloc_factor": 0,
                  "expire": 0, "free_count": 0}
    fields.update(pcp_fields or {})
    nr_free = sum(a.nr_free << o for o, a in enumerate(free_area))
    iso = k.migratetypes.index("Isolate")
    zone_fields = {"nr_isolate_pageblock": sum(1 for mt in pageblocks if mt == iso)}
    if series in ("6.12", "7.2"):
        # What the probe reads from struct zone: the kernel keeps it equal to
        # the pages on HIGHATOMIC free lists (account_freepages 6.12 L663).
        zone_fields["nr_free_highatomic"] = sum(1 << o for _, o, mt in free if mt == H)
    spanned = len(pageblocks) * PB
    zone = Zone(node=0, name="DMA32", start_pfn=BASE, spanned_pages=spanned,
                present_pages=spanned, managed_pages=managed or spanned,
                watermarks=dict(zip(("min", "low", "high"), watermarks)), watermark_boost=boost,
                lowmem_reserve=[0, 0, 0, 0, 0], nr_reserved_highatomic=reserved_highatomic,
                nr_free_pages=nr_free, free_area=free_area,
                pcp=[Pcp(cpu=0, count=count, high=high, batch=batch, fields=fields, lists=pcp_pfns)],
                pageblock_migratetypes=list(pageblocks), fields=zone_fields)
    capture = Capture(source="qmp", target="hand-built", time="2026-01-01T00:00:00Z",
                      paused=True, read_seconds=0.0, tool="tests/model/test_paths.py")
    return Snapshot(k, capture, [zone])


def lists(alloc):
    """Every non-empty free list: {(order, migratetype): [pfn, ...]}."""
    return {(o, mt): l for o in range(alloc.nr_orders) for mt in range(alloc.nr_mt)
            if (l := alloc.free_list(0, o, mt))}


def pcp_lists(alloc, cpu=0):
    """Every non-empty pcp list: {(order, migratetype of the list): [pfn, ...]}."""
    out = {}
    for i, l in enumerate(alloc.zones[0].pcp[cpu].lists):
        if l:
            pl = alloc.pcp_lists[i]
            out[(pl.order, pl.migratetypes[0])] = list(l)
    return out


def block_types(alloc):
    return list(alloc.zones[0].pageblocks)


def zone_locked(*pfns):
    return [("zone_locked", p) for p in pfns]


# == the pcp fast path ==========================================================

@pytest.mark.parametrize("series", SERIES)
def test_pcp_hit_takes_the_head(series):
    # __rmqueue_pcplist: page = list_first_entry(list, ...) -- 5.10 L3392,
    # 6.1 L3824, 6.12 L3095, 7.2 L3352. No zone lock, no zone_locked event.
    pcp = {(0, M): [0x1001, 0x1003, 0x1005]}
    if series != "5.10":
        pcp[(2, U)] = [0x1208, 0x1210]   # order-2 pcp lists exist from 6.1 on
    a = build(series, [M, U], free=[(0x1100, 4, M)], pcp=pcp)
    before = lists(a)
    out = a.allocate(0, 0, M, NORMAL, FAST)
    assert (out.pfn, out.kind, out.events) == (0x1001, "pcp", [])
    assert pcp_lists(a)[(0, M)] == [0x1003, 0x1005]
    if series != "5.10":
        out = a.allocate(0, 2, U, NORMAL, FAST)
        assert (out.pfn, out.kind, out.events) == (0x1208, "pcp", [])
        assert pcp_lists(a)[(2, U)] == [0x1210]
    assert a.zones[0].pcp[0].count == 2 + (4 if series != "5.10" else 0)
    assert lists(a) == before


def test_refill_5_10_takes_pcp_batch_pages():
    # 5.10 __rmqueue_pcplist L3376: rmqueue_bulk(zone, 0, pcp->batch, ...)
    # (L3385); rmqueue_bulk L2884: __rmqueue once per page, list_add_tail
    # (L2910) in the order __rmqueue returns them; __rmqueue L2844 traces
    # zone_locked at its exit (L2875). Five pages of the order-3 block 0x1208: 0x1208 (split
    # 0x120c/2, 0x120a/1, 0x1209/0 to the heads), 0x1209, 0x120a (split
    # 0x120b/0), 0x120b, 0x120c (split 0x120e/1, 0x120d/0).
    a = build("5.10", [M, U], free=[(0x1208, 3, U)], batch=5, high=30)
    out = a.allocate(0, 0, U, NORMAL, FAST)
    assert out.kind == "refill"
    assert out.refill == [0x1208, 0x1209, 0x120a, 0x120b, 0x120c]
    assert out.pfn == 0x1208
    assert out.events == zone_locked(0x1208, 0x1209, 0x120a, 0x120b, 0x120c)
    assert pcp_lists(a) == {(0, U): [0x1209, 0x120a, 0x120b, 0x120c]}
    assert a.zones[0].pcp[0].count == 4
    assert lists(a) == {(0, U): [0x120d], (1, U): [0x120e]}


def test_refill_6_1_takes_batch_shifted_by_order():
    # 6.1 __rmqueue_pcplist L3793: batch = max(pcp->batch >> order, 2)
    # (L3814): 8 >> 1 = 4 order-1 blocks; rmqueue_bulk L3152 adds each at the
    # tail (L3179) in __rmqueue's order; zone_locked from __rmqueue_smallest
    # (L2605) for each.
    a = build("6.1", [M, U], free=[(0x1208, 3, U)], batch=8, high=48)
    out = a.allocate(0, 1, U, NORMAL, FAST)
    assert out.refill == [0x1208, 0x120a, 0x120c, 0x120e]
    assert out.pfn == 0x1208
    assert out.events == zone_locked(0x1208, 0x120a, 0x120c, 0x120e)
    assert pcp_lists(a) == {(1, U): [0x120a, 0x120c, 0x120e]}
    assert a.zones[0].pcp[0].count == 6
    assert lists(a) == {}


def test_refill_6_1_batch_of_one_is_not_scaled():
    # 6.1 __rmqueue_pcplist L3813: "if (batch > 1)" -- a batch of 1 (boot
    # pageset) stays 1 instead of becoming max(1 >> order, 2) = 2.
    a = build("6.1", [M, U], free=[(0x1208, 3, U)], batch=1, high=0)
    out = a.allocate(0, 1, U, NORMAL, FAST)
    assert out.refill == [0x1208]
    assert pcp_lists(a) == {}


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_refill_6_12_uses_nr_pcp_alloc(series):
    # nr_pcp_alloc (6.12 L3021, 7.2 L3264): high = clamp(8, 8, 64) = 8;
    # batch = 4 << alloc_factor(1) = 8; not ZONE_BELOW_HIGH, so pcp->high =
    # min(8 + 8, 64) = 16; max_nr_alloc = max(16 - 0 - 4, 4) = 12 >= 8, so
    # alloc_factor++ (2); batch = min(8, 12) = 8. rmqueue_pcplist halves
    # free_count first (6 -> 3; 6.12 L3126, 7.2 L3379). The eight pages of the
    # order-3 block, ascending, tail-added (rmqueue_bulk 6.12 L2401, 7.2 L2553).
    a = build(series, [M, U], free=[(0x1208, 3, U)], batch=4, high=8,
              pcp_fields={"high_min": 8, "high_max": 64, "alloc_factor": 1, "free_count": 6})
    out = a.allocate(0, 0, U, NORMAL, FAST)
    assert out.refill == list(range(0x1208, 0x1210))
    assert out.pfn == 0x1208
    assert out.events == zone_locked(*range(0x1208, 0x1210))
    assert pcp_lists(a) == {(0, U): list(range(0x1209, 0x1210))}
    pcp = a.zones[0].pcp[0]
    assert (pcp.count, pcp.high, pcp.alloc_factor, pcp.free_count) == (7, 16, 2, 3)
    assert lists(a) == {}


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_refill_6_12_small_high_takes_one(series):
    # nr_pcp_alloc (6.12 L3033, 7.2 L3276): high < pcp->batch ("PCP disabled
    # or boot pageset") returns 1.
    a = build(series, [M, U], free=[(0x1208, 3, U)], batch=4, high=2,
              pcp_fields={"high_min": 2, "high_max": 2})
    out = a.allocate(0, 0, U, NORMAL, FAST)
    assert out.refill == [0x1208]


# == __rmqueue_smallest and expand =============================================

@pytest.mark.parametrize("series", SERIES)
def test_rmqueue_smallest_keeps_the_lowest_part_and_puts_halves_at_heads(series):
    # __rmqueue_smallest (5.10 L2310, 6.1 L2589, 6.12 L1634, 7.2 L1889):
    # the head of the first non-empty list from the order up; expand (5.10
    # L2163, 6.1 L2375, 6.12 L1441, 7.2 L1702) keeps the lowest 2^low pages
    # and adds each upper half at the head (5.10 L2182, 6.1 L2394, 6.12 L1461,
    # 7.2 L1722: add_to_free_list / __add_to_free_list(.., false)), largest
    # first. Order 4 is a buddy order in every series (rmqueue_buddy, 5.10
    # rmqueue).
    a = build(series, [M, U], free=[(0x1080, 7, M), (0x1300, 7, U)])
    out = a.allocate(0, 4, M, NORMAL, FAST)
    assert (out.pfn, out.kind) == (0x1080, "buddy")
    assert out.events == zone_locked(0x1080)
    split = [s for s in out.path if s.kind == "split"]
    assert [s.detail["pieces"] for s in split] == [[(0x10c0, 6), (0x10a0, 5), (0x1090, 4)]]
    assert lists(a) == {(4, M): [0x1090], (5, M): [0x10a0], (6, M): [0x10c0], (7, U): [0x1300]}
    # The next ones take the heads: ascending PFNs from one block.
    assert [a.allocate(0, 4, M, NORMAL, FAST).pfn for _ in range(7)] == [
        0x1090, 0x10a0, 0x10b0, 0x10c0, 0x10d0, 0x10e0, 0x10f0]
    assert lists(a) == {(7, U): [0x1300]}


@pytest.mark.parametrize("series", SERIES)
def test_order0_allocations_from_one_block_ascend(series):
    # With a pcp batch of 1 every order-0 allocation refills one page
    # (5.10 __rmqueue_pcplist L3385: rmqueue_bulk(.., pcp->batch ..); 6.1
    # L3813 keeps a batch of 1; 6.12 nr_pcp_alloc L3033 / 7.2 L3276 return 1
    # when high < batch): __rmqueue_smallest takes the smallest order first
    # (the order-2 block before the order-3 one), and within a block the
    # lowest piece each time, since expand put the upper halves at the heads.
    a = build(series, [M, U], free=[(0x1208, 3, U), (0x1240, 2, U)], batch=1, high=0)
    got = [a.allocate(0, 0, U, NORMAL, FAST).pfn for _ in range(12)]
    assert got == list(range(0x1240, 0x1244)) + list(range(0x1208, 0x1210))
    assert lists(a) == {}


# == fallback ===================================================================
# Pageblocks [MOVABLE, UNMOVABLE, RECLAIMABLE, MOVABLE]; an UNMOVABLE order-4
# request finds no UNMOVABLE block at order >= 4 and falls back to the
# RECLAIMABLE block 0x1400 (fallbacks[UNMOVABLE] = {RECLAIMABLE, MOVABLE}). A
# non-MOVABLE block: alike_pages = 0, so claiming depends only on the free
# pages (>= 256), not on PageLRU, which the model cannot see.
FALLBACK_BLOCKS = [M, U, R, M]
# watermark high 1000: boost_watermark's max_boost = 1000 * 15000 / 10000 = 1500;
# managed 2048 is not < 4 pageblocks, so the zone is boosted by 512 per call.
FALLBACK_WMARKS = (0, 0, 1000)


def fallback_state(series, block_free):
    return build(series, FALLBACK_BLOCKS, watermarks=FALLBACK_WMARKS,
                 free=[(0x1200, 2, U), (0x1000, 3, M)] + block_free)


@pytest.mark.parametrize("series", ["5.10", "6.1"])
def test_fallback_5_10_claims_the_block_and_returns_a_moved_page(series):
    # __rmqueue_fallback (5.10 L2762, 6.1 L3033): the largest fallback block
    # first (order 8, 0x1400); steal_suitable_fallback (5.10 L2520, 6.1 L2791):
    # boost_watermark (5.10 L2547, 6.1 L2818), move_freepages_block (5.10 L2554,
    # 6.1 L2825) moves every free page of the block to the tail of UNMOVABLE's
    # lists in PFN order (move_to_free_list = list_move_tail); 276 free >= 256,
    # so set_pageblock_migratetype (5.10 L2588, 6.1 L2859). The extfrag event
    # names the fallback head (5.10 L2832, 6.1 L3103), with change_ownership
    # true (kmem.h: pageblock type == alloc type). Then __rmqueue retries
    # __rmqueue_smallest (5.10 L2864/L2871, 6.1 L3135/L3142), which takes
    # the smallest moved order >= 4: 0x1500, not the extfrag page.
    a = fallback_state(series, [(0x1400, 8, R), (0x1500, 4, R), (0x1510, 2, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert (out.pfn, out.kind) == (0x1500, "fallback")
    assert out.events == [("extfrag", 0x1400, 8, True)] + zone_locked(0x1500)
    assert lists(a) == {(2, U): [0x1200, 0x1510], (8, U): [0x1400], (3, M): [0x1000]}
    assert block_types(a) == [M, U, U, M]
    assert a.zones[0].boost == 512


@pytest.mark.parametrize("series", ["5.10", "6.1"])
def test_fallback_5_10_moves_free_pages_even_without_claiming(series):
    # steal_suitable_fallback (5.10 L2554, 6.1 L2825): move_freepages_block runs
    # before the threshold test, so with 144 free < 256 the free pages still
    # move to UNMOVABLE's tails while the block stays RECLAIMABLE
    # (change_ownership false); the retry takes 0x1500 from UNMOVABLE order 4.
    a = fallback_state(series, [(0x1400, 7, R), (0x1500, 4, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1500
    assert out.events == [("extfrag", 0x1400, 7, False)] + zone_locked(0x1500)
    assert lists(a) == {(2, U): [0x1200], (7, U): [0x1400], (3, M): [0x1000]}
    assert block_types(a) == FALLBACK_BLOCKS


@pytest.mark.parametrize("series", ["5.10", "6.1"])
def test_fallback_5_10_split_remainder_goes_to_the_start_type(series):
    # As above with only the order-7 page free: it moves to UNMOVABLE order 7
    # and __rmqueue_smallest splits it there, so the remainders sit on
    # UNMOVABLE's lists in a RECLAIMABLE block.
    a = fallback_state(series, [(0x1400, 7, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1400
    assert out.events == [("extfrag", 0x1400, 7, False)] + zone_locked(0x1400)
    assert lists(a) == {(2, U): [0x1200], (4, U): [0x1410], (5, U): [0x1420],
                        (6, U): [0x1440], (3, M): [0x1000]}
    assert block_types(a) == FALLBACK_BLOCKS


@pytest.mark.parametrize("series", ["5.10", "6.1"])
def test_fallback_5_10_whole_pageblock_is_retyped(series):
    # steal_suitable_fallback (5.10 L2537, 6.1 L2808): current_order >=
    # pageblock_order: change_pageblock_range, then single_page:
    # move_to_free_list (tail of the start type); no boost.
    a = build(series, FALLBACK_BLOCKS, watermarks=FALLBACK_WMARKS,
              free=[(0x1200, 2, U), (0x1400, 9, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1400
    assert out.events == [("extfrag", 0x1400, 9, True)] + zone_locked(0x1400)
    assert block_types(a) == [M, U, U, M]
    assert lists(a) == {(2, U): [0x1200], (4, U): [0x1410], (5, U): [0x1420],
                        (6, U): [0x1440], (7, U): [0x1480], (8, U): [0x1500]}
    assert a.zones[0].boost == 0


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_claim_6_12_moves_the_block_and_takes_from_it(series):
    # __rmqueue (6.12 L2306, 7.2 L2454): __rmqueue_smallest fails, then
    # __rmqueue_claim (6.12 L2217, 7.2 L2361) from the largest order:
    # try_to_steal_block (6.12 L1955) / try_to_claim_block (7.2 L2286):
    # boost, 276 free >= 256: __move_freepages_block to UNMOVABLE's tails and
    # retype (6.12 L2023, 7.2 L2344), then __rmqueue_smallest (zone_locked
    # 0x1500); the extfrag event names the returned page (6.12 L2255, 7.2 L2402).
    a = fallback_state(series, [(0x1400, 8, R), (0x1500, 4, R), (0x1510, 2, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert (out.pfn, out.kind) == (0x1500, "fallback")
    assert out.events == zone_locked(0x1500) + [("extfrag", 0x1500, 8, True)]
    assert lists(a) == {(2, U): [0x1200, 0x1510], (8, U): [0x1400], (3, M): [0x1000]}
    assert block_types(a) == [M, U, U, M]
    assert a.zones[0].boost == 512


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_steal_6_12_leaves_the_remainders_on_the_fallback_type(series):
    # __rmqueue_claim: the claim of 0x1400 (128 free < 256) fails and moves
    # nothing (try_to_steal_block returns NULL: 6.12 L2027, 7.2 L2349); then
    # __rmqueue_steal (6.12 L2269, 7.2 L2416): the smallest fallback block,
    # page_del_and_expand with the *fallback* type, so the remainders stay on
    # RECLAIMABLE's lists; extfrag with change_ownership false; no zone_locked
    # (steal does not go through __rmqueue_smallest).
    a = fallback_state(series, [(0x1400, 7, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1400
    assert out.events == [("extfrag", 0x1400, 7, False)]
    assert [s.kind for s in out.path if s.kind in ("claim", "steal")] == ["steal"]
    assert lists(a) == {(2, U): [0x1200], (4, R): [0x1410], (5, R): [0x1420],
                        (6, R): [0x1440], (3, M): [0x1000]}
    assert block_types(a) == FALLBACK_BLOCKS
    assert a.zones[0].boost == 512   # the one failed claim attempt boosted


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_claim_6_12_boosts_on_every_attempt_and_moves_nothing(series):
    # __rmqueue_claim tries the head of each order from the top: 0x1400 at
    # order 7 and 0x1500 at order 4, both in the block with 144 free pages;
    # each try boosts the watermark (6.12 L1988, 7.2 L2309) and fails. Steal
    # then takes the order-4 page whole; the order-7 page stays RECLAIMABLE.
    a = fallback_state(series, [(0x1400, 7, R), (0x1500, 4, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1500
    assert out.events == [("extfrag", 0x1500, 4, False)]
    assert lists(a) == {(2, U): [0x1200], (7, R): [0x1400], (3, M): [0x1000]}
    assert a.zones[0].boost == 1024


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_claim_6_12_whole_pageblock(series):
    # try_to_steal_block (6.12 L1973) / try_to_claim_block (7.2 L2294):
    # current_order >= pageblock_order: del, change_pageblock_range, expand
    # onto the start type; no __rmqueue_smallest, so only the extfrag event.
    a = build(series, FALLBACK_BLOCKS, watermarks=FALLBACK_WMARKS,
              free=[(0x1200, 2, U), (0x1400, 9, R)])
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1400
    assert out.events == [("extfrag", 0x1400, 9, True)]
    assert block_types(a) == [M, U, U, M]
    assert lists(a) == {(2, U): [0x1200], (4, U): [0x1410], (5, U): [0x1420],
                        (6, U): [0x1440], (7, U): [0x1480], (8, U): [0x1500]}
    assert a.zones[0].boost == 0


@pytest.mark.parametrize("series", SERIES)
def test_fallback_movable_small_order_takes_the_smallest_block(series):
    # A MOVABLE order-1 request may not take whole blocks below order
    # pageblock_order / 2 = 4 (can_steal_fallback 5.10 L2454, 6.1 L2725, 6.12
    # L1882; should_try_claim_block 7.2 L2205). The largest fallback is
    # RECLAIMABLE order 3, so:
    # - 5.10/6.1 __rmqueue_fallback goto find_smallest (5.10 L2803, 6.1 L3074):
    #   the order-2 block, steal_suitable_fallback without whole_block:
    #   boost, then move_to_free_list of that one page to MOVABLE (single_page,
    #   5.10 L2592, 6.1 L2863); the retry splits it on MOVABLE's lists.
    # - 6.12/7.2 __rmqueue_claim breaks at the first fallback it may not claim
    #   (no attempt, no boost); __rmqueue_steal splits the order-2 block on
    #   RECLAIMABLE's lists.
    # Order 1 is a pcp order from 6.1 on: a batch of 1 refills just this page.
    a = build(series, FALLBACK_BLOCKS, watermarks=FALLBACK_WMARKS, batch=1, high=0,
              free=[(0x1400, 3, R), (0x1500, 2, R)])
    out = a.allocate(0, 1, M, NORMAL, FAST)
    assert out.pfn == 0x1500
    z = a.zones[0]
    if series in ("5.10", "6.1"):
        assert out.events == [("extfrag", 0x1500, 2, False)] + zone_locked(0x1500)
        assert lists(a) == {(1, M): [0x1502], (3, R): [0x1400]}
        assert z.boost == 512
    else:
        assert out.events == [("extfrag", 0x1500, 2, False)]
        assert lists(a) == {(1, R): [0x1502], (3, R): [0x1400]}
        assert z.boost == 0
    assert block_types(a) == FALLBACK_BLOCKS


@pytest.mark.parametrize("series", SERIES)
def test_fallback_counts_pcp_pages_as_alike_for_unmovable(series):
    # Pages on pcp lists are neither PageBuddy nor PageLRU/movable (move_freepages
    # 5.10 L2386, 6.1 L2661; prep_move_freepages_block 6.12 L1763, 7.2 L2016), so
    # for an UNMOVABLE request falling back to a MOVABLE block they are
    # "alike": 128 free + (512 - 128 - 0) >= 256 claims the block, although
    # only a quarter of it is free. (The other 384 pages are order-0 pcp pages.)
    a = build(series, [M, U], free=[(0x1000, 7, M)], pcp={(0, M): list(range(0x1080, 0x1200))},
              high=1000)
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1000
    assert ("extfrag", 0x1000, 7, True) in out.events
    assert block_types(a) == [U, U]


# == freeing: __free_one_page ===================================================

@pytest.mark.parametrize("series", SERIES)
def test_free_merges_with_its_buddy_and_goes_to_the_head(series):
    # __free_one_page (5.10 L987, 6.1 L1122, 6.12 L810, 7.2 L936): 0x1000/4
    # merges with its free buddy 0x1010/4 into 0x1000/5; the order-5 buddy
    # 0x1020 is not free, so it stops. buddy_merge_likely (5.10 L942, 6.1
    # L1082, 6.12 L759, 7.2 L885): the order-6 buddy 0x1040 is not free, so
    # add_to_free_list (head), before 0x1100. Order 4 is no pcp order.
    a = build(series, [M, U], free=[(0x1010, 4, M), (0x1100, 5, M)])
    assert a.free(0, 0x1000, 4) == []
    assert lists(a) == {(5, M): [0x1000, 0x1100]}
    assert a.zones[0].nr_free[4] == 0


@pytest.mark.parametrize("series", SERIES)
def test_free_goes_to_the_tail_when_the_next_merge_is_likely(series):
    # As above with 0x1040/6 free: buddy_merge_likely finds the order-6 buddy
    # of the merged 0x1000/5 free, so add_to_free_list_tail.
    a = build(series, [M, U], free=[(0x1010, 4, M), (0x1100, 5, M), (0x1040, 6, M)])
    a.free(0, 0x1000, 4)
    assert lists(a) == {(5, M): [0x1100, 0x1000], (6, M): [0x1040]}


@pytest.mark.parametrize("series", SERIES)
def test_free_merges_all_the_way_up(series):
    # __free_one_page merges while the buddy is free at the same order, up to
    # MAX_ORDER - 1 (5.10 continue_merging L1011, 6.1 L1143) / MAX_PAGE_ORDER
    # (6.12 L830, 7.2 L956). Types below pageblock_order never matter.
    free = [(0x1001, 0, M), (0x1002, 1, M), (0x1004, 2, U), (0x1008, 3, R), (0x1010, 4, M),
            (0x1020, 5, M), (0x1040, 6, M), (0x1080, 7, M), (0x1100, 8, M), (0x1200, 9, M)]
    a = build(series, [M, M], free=free)
    a.free_one_page(a.zones[0], 0x1000, 0, M)
    assert lists(a) == {(10, M): [0x1000]}
    assert a.zones[0].nr_free == [0] * 10 + [1]
    assert a.zones[0].free_pages == 1024


@pytest.mark.parametrize("series", SERIES)
def test_free_merge_across_pageblocks_of_mergeable_types(series):
    # At order >= pageblock_order the buddy's pageblock type is read: MOVABLE
    # and UNMOVABLE merge in every series. 6.12 L874 / 7.2 L998: a merge with
    # a buddy of another type change_pageblock_range()s the buddy to the freed
    # page's type; 5.10 and 6.1 leave the types alone.
    a = build(series, [M, U], free=[(0x1200, 9, U)])
    a.free_one_page(a.zones[0], 0x1000, 9, M)
    assert lists(a) == {(10, M): [0x1000]}
    assert block_types(a) == ([M, M] if series in ("6.12", "7.2") else [M, U])


@pytest.mark.parametrize("series", SERIES)
def test_free_merge_with_a_highatomic_pageblock(series):
    # 5.10 L1047: at order >= pageblock_order the types are compared only when
    # the zone has ISOLATE blocks, and then only ISOLATE refuses: MOVABLE and
    # HIGHATOMIC merge. 6.1 L1163, 6.12 L851, 7.2 L977: HIGHATOMIC is not
    # migratetype_is_mergeable, so the two order-9 blocks stay apart.
    a = build(series, [M, H], free=[(0x1200, 9, H)], reserved_highatomic=PB)
    a.free_one_page(a.zones[0], 0x1000, 9, M)
    if series == "5.10":
        assert lists(a) == {(10, M): [0x1000]}
    else:
        assert lists(a) == {(9, M): [0x1000], (9, H): [0x1200]}


@pytest.mark.parametrize("series", SERIES)
def test_free_merge_with_an_isolated_pageblock_is_refused(series):
    # 5.10 L1054-1056 (is_migrate_isolate on either side), 6.1 L1163, 6.12
    # L851, 7.2 L977 (ISOLATE is not mergeable): an order-9 free next to an
    # isolated block stays order 9.
    iso = _kernel(series).migratetypes.index("Isolate")
    a = build(series, [M, iso], free=[(0x1200, 9, iso)])
    a.free_one_page(a.zones[0], 0x1000, 9, M)
    assert lists(a) == {(9, M): [0x1000], (9, iso): [0x1200]}
    assert a.zones[0].free_pages == PB   # ISOLATE pages are not counted


# == freeing: the pcp commit and drains =========================================

def test_drain_5_10_round_robin_from_movable():
    # 5.10 free_unref_page_commit L3169: list_add (head, L3195) to lists[mt],
    # count++, count (8) >= high (8) (L3197): free_pcppages_bulk(zone, batch=6)
    # L1344. Round robin from MOVABLE (++migratetype from 0, L1371), taking
    # list_last_entry; an empty list bumps batch_free, which is how many are
    # taken from the next list: m2 | r3 | (UNMOVABLE empty) m1 m0 | r2 |
    # (empty) F.
    m0, m1, m2, F = 0x1010, 0x1012, 0x1014, 0x1016
    r = [0x1410, 0x1412, 0x1414, 0x1416]
    a = build("5.10", [M, U, R], pcp={(0, M): [m0, m1, m2], (0, R): r}, batch=6, high=8)
    drain = a.free(0, F, 0)
    assert drain == [(m2, 0, M), (r[3], 0, R), (m1, 0, M), (m0, 0, M), (r[2], 0, R), (F, 0, M)]
    assert pcp_lists(a) == {(0, R): r[:2]}
    assert a.zones[0].pcp[0].count == 2
    # __free_one_page put each at its list's head, in drain order.
    assert lists(a) == {(0, M): [F, m0, m1, m2], (0, R): [r[2], r[3]]}


def test_no_drain_5_10_below_high():
    # 5.10 free_unref_page_commit L3197: count (8) < high (9): no drain; the
    # page is at the head of its list.
    a = build("5.10", [M, U, R], pcp={(0, M): [0x1010, 0x1012, 0x1014],
                                      (0, R): [0x1410, 0x1412, 0x1414, 0x1416]},
              batch=6, high=9)
    assert a.free(0, 0x1016, 0) == []
    assert pcp_lists(a)[(0, M)] == [0x1016, 0x1010, 0x1012, 0x1014]


def test_drain_6_1_starts_at_the_freed_list():
    # 6.1 free_unref_page_commit L3469: head of lists[1], count 9 >= high 9;
    # nr_pcp_free L3422: batch << free_factor(2) = 8, not < high - batch = 7
    # (L3444: free_factor stays 2), clamp(8, 2, 7) = 7 (L3446).
    # free_pcppages_bulk L1574 from the freed pindex: its whole list from the
    # tail (m2 m1 m0 F), then the next non-empty lists: r0 (lists[2]) and the
    # order-1 page (lists[4], count -= 2). UNMOVABLE (lists[0]) is left.
    u = [0x1210, 0x1212]
    m0, m1, m2, F, r0, o1 = 0x1010, 0x1012, 0x1014, 0x1016, 0x1410, 0x1020
    a = build("6.1", [M, U, R], pcp={(0, U): u, (0, M): [m0, m1, m2], (0, R): [r0],
                                     (1, M): [o1]},
              batch=2, high=9, pcp_fields={"free_factor": 2})
    drain = a.free(0, F, 0)
    assert drain == [(m2, 0, M), (m1, 0, M), (m0, 0, M), (F, 0, M), (r0, 0, R), (o1, 1, M)]
    assert pcp_lists(a) == {(0, U): u}
    pcp = a.zones[0].pcp[0]
    assert (pcp.count, pcp.free_factor) == (2, 2)


def test_drain_6_1_grows_free_factor():
    # nr_pcp_free L3444: batch << free_factor (2 << 0) < high - batch (7):
    # free_factor++ and 2 pages go.
    a = build("6.1", [M, U, R], pcp={(0, M): [0x1010, 0x1012, 0x1014, 0x1018],
                                     (0, R): [0x1410, 0x1412, 0x1414, 0x1416]},
              batch=2, high=9)
    drain = a.free(0, 0x1016, 0)
    assert drain == [(0x1018, 0, M), (0x1014, 0, M)]
    assert a.zones[0].pcp[0].free_factor == 1


# 6.12 / 7.2 drains: lists[0] (order 0 UNMOVABLE) = U6, lists[1] = M6,
# lists[2] = R6: count 6. The freed order-3 page F goes to lists[10] (order 3
# MOVABLE): count 14. high_min == high_max == high = 14, so nr_pcp_high
# returns high (6.12 L2657, 7.2 L2806) and 14 >= 14 drains. free_count
# 10 + 8 = 18; nr_pcp_free (6.12 L2603, 7.2 L2752): clamp(18, 2, 14 - 2) = 12.
U6 = [0x1210, 0x1212]
M6 = [0x1010, 0x1012, 0x1014]
R6 = [0x1410]
F6 = 0x1028


def drain_state_6_12(series):
    return build(series, [M, U, R], pcp={(0, U): U6, (0, M): M6, (0, R): R6}, batch=2, high=14,
                 pcp_fields={"free_count": 10, "alloc_factor": 3})


def test_drain_6_12_wraps_around_from_the_freed_list():
    # free_pcppages_bulk (6.12 L1218): from lists[10]: F (count 12 - 8 = 4);
    # lists 11..13 empty, wrap to 0 (L1243): u1 u0 (2), then lists[1]: m2 m1
    # (0). free_unref_page_commit L2676: alloc_factor >>= 1, order 1..3 sets
    # PCPF_PREV_FREE_HIGH_ORDER, free_count += 8.
    a = drain_state_6_12("6.12")
    drain = a.free(0, F6, 3)
    assert drain == [(F6, 3, M), (U6[1], 0, U), (U6[0], 0, U), (M6[2], 0, M), (M6[1], 0, M)]
    assert pcp_lists(a) == {(0, M): M6[:1], (0, R): R6}
    pcp = a.zones[0].pcp[0]
    assert (pcp.count, pcp.alloc_factor, pcp.free_count, pcp.flags & 1) == (2, 1, 18, 1)
    assert lists(a)[(3, M)] == [F6]


def test_drain_7_2_goes_in_batch_sized_chunks():
    # 7.2 free_frozen_page_commit L2832: to_free 12 is drained in chunks of
    # min(to_free, batch = 2) (L2887), each free_pcppages_bulk (L1459)
    # starting again at lists[10]: F (overshoots: -6) | u1 u0 | m2 m1 | m0 r0,
    # then pcp->count is 0 and the loop stops: 14 pages for a to_free of 12.
    a = drain_state_6_12("7.2")
    drain = a.free(0, F6, 3)
    assert drain == [(F6, 3, M), (U6[1], 0, U), (U6[0], 0, U), (M6[2], 0, M), (M6[1], 0, M),
                     (M6[0], 0, M), (R6[0], 0, R)]
    assert pcp_lists(a) == {}
    assert a.zones[0].pcp[0].count == 0


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_no_drain_6_12_below_high(series):
    # As above with high 15: count 14 < 15, no drain (6.12 L2714, 7.2 L2882).
    a = build(series, [M, U, R], pcp={(0, U): U6, (0, M): M6, (0, R): R6}, batch=2, high=15)
    assert a.free(0, F6, 3) == []
    assert pcp_lists(a)[(3, M)] == [F6]


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_drain_mt_is_the_pageblock_type_at_drain_time(series):
    # 6.12 free_pcppages_bulk L1256 / 7.2 L1496: mt = get_pfnblock_migratetype
    # at drain time. A MOVABLE-list page in a block retyped UNMOVABLE since
    # goes to UNMOVABLE's free list. The freed page itself (free_unref_page
    # 6.12 L2750 reads the block type: UNMOVABLE) goes to lists[0], where the
    # drain starts; nr_pcp_free: clamp(free_count 5 + 1, 1, 3 - 1) = 2 pages.
    a = build(series, [M, U], pcp={(0, M): [0x1010, 0x1012]}, batch=1, high=3,
              pcp_fields={"free_count": 5})
    a.zones[0].pageblocks[0] = U
    drain = a.free(0, 0x1014, 0)
    assert drain == [(0x1014, 0, U), (0x1012, 0, U)]
    assert lists(a) == {(0, U): [0x1012, 0x1014]}


def test_drain_mt_5_10_is_the_one_cached_at_free_time():
    # 5.10 free_pcppages_bulk L1413: mt = get_pcppage_migratetype (page->index,
    # set at free or refill); the pageblock is re-read only when the zone has
    # isolated blocks.
    a = build("5.10", [M, U], pcp={(0, M): [0x1010, 0x1012]}, batch=1, high=3)
    a.zones[0].pageblocks[0] = U
    drain = a.free(0, 0x1014, 0)
    assert drain == [(0x1012, 0, M)]


# == highatomic ==================================================================

ATOMIC = ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK | ALLOC_KSWAPD
# Block 1 is reserved (nr_reserved_highatomic 512); the MOVABLE pageblocks keep
# the zone above its watermarks for requests that may not count the reserve
# (__zone_watermark_unusable_free 5.10 L3569, 6.1 L4001).
HIGHATOMIC_FREE = [(0x1010, 4, U), (0x1200, 5, H), (0x1400, 9, M)]


@pytest.mark.parametrize("series", SERIES)
def test_highatomic_first(series):
    # rmqueue_buddy (6.1 L3761, 6.12 L2991, 7.2 L3227): with ALLOC_HIGHATOMIC,
    # __rmqueue_smallest(MIGRATE_HIGHATOMIC) before __rmqueue. 5.10 rmqueue
    # L3462: the same for order > 0 with ALLOC_HARDER (the model's
    # ALLOC_NON_BLOCK bit), traced with the requested migratetype (L3465).
    flags = ATOMIC | (ALLOC_HIGHATOMIC if series != "5.10" else 0)
    a = build(series, [U, H, M, M], free=HIGHATOMIC_FREE, reserved_highatomic=PB)
    out = a.allocate(0, 4, U, NORMAL, flags)
    assert out.pfn == 0x1200
    assert out.events == zone_locked(0x1200)
    assert lists(a) == {(4, U): [0x1010], (4, H): [0x1210], (9, M): [0x1400]}


@pytest.mark.parametrize("series", SERIES)
def test_highatomic_not_without_the_flag(series):
    # Without ALLOC_HIGHATOMIC (5.10: ALLOC_HARDER) __rmqueue takes UNMOVABLE.
    a = build(series, [U, H, M, M], free=HIGHATOMIC_FREE, reserved_highatomic=PB)
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1010
    assert lists(a) == {(5, H): [0x1200], (9, M): [0x1400]}


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_highatomic_is_the_last_resort_of_non_block_order0(series):
    # rmqueue_buddy (6.1 L3772, 6.12 L3004, 7.2 L3240): when __rmqueue finds
    # nothing, ALLOC_OOM|ALLOC_NON_BLOCK may take HIGHATOMIC, at any order.
    # Nothing UNMOVABLE/RECLAIMABLE/MOVABLE is free: the pcp refill gets
    # nothing, then the buddy path splits the HIGHATOMIC block.
    a = build(series, [U, H], free=[(0x1200, 1, H)], reserved_highatomic=PB)
    out = a.allocate(0, 0, U, NORMAL, ALLOC_WMARK_MIN | ALLOC_NON_BLOCK)
    assert out.pfn == 0x1200
    assert lists(a) == {(0, H): [0x1201]}
    # Without NON_BLOCK/OOM the reserve stays out of reach even with no
    # watermark to pass.
    a = build(series, [U, H], free=[(0x1200, 1, H)], reserved_highatomic=PB)
    assert a.allocate(0, 0, U, NORMAL, ALLOC_NO_WATERMARKS).pfn is None
    assert lists(a) == {(1, H): [0x1200]}


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_highatomic_pcp_order(series):
    # An order-1 ALLOC_HIGHATOMIC request with an empty pcp list: 6.1
    # (__rmqueue_pcplist L3793) and 6.12 (L3073) refill it from UNMOVABLE; 7.2
    # __rmqueue_pcplist L3340 returns NULL instead of refilling, and
    # rmqueue_buddy takes the HIGHATOMIC block first.
    a = build(series, [U, H], free=[(0x1010, 4, U), (0x1200, 5, H)], batch=2, high=12,
              reserved_highatomic=PB)
    out = a.allocate(0, 1, U, NORMAL, ATOMIC | ALLOC_HIGHATOMIC)
    if series == "7.2":
        assert (out.pfn, out.kind) == (0x1200, "buddy")
        assert lists(a)[(4, H)] == [0x1210]
    else:
        assert (out.pfn, out.kind, out.refill) == (0x1010, "refill", [0x1010, 0x1012])


@pytest.mark.parametrize("series", SERIES)
def test_highatomic_reserve_needs_a_pageblock_of_one_percent_from_6_12(series):
    # managed 51100: 1% is 511 pages. 5.10/6.1 reserve_highatomic_pageblock
    # (5.10 L2647, 6.1 L2918) allow 511 + 512; 6.12 (L2081) / 7.2 (L3449)
    # reserve nothing while 1% is under one pageblock.
    flags = ATOMIC | (ALLOC_HIGHATOMIC if series != "5.10" else 0)
    a = build(series, [U, M], free=[(0x1010, 4, U), (0x1100, 3, U)], managed=51100)
    assert a.allocate(0, 4, U, NORMAL, flags).pfn == 0x1010
    if series in ("5.10", "6.1"):
        assert (block_types(a), a.zones[0].nr_reserved_highatomic) == ([H, M], PB)
    else:
        assert (block_types(a), a.zones[0].nr_reserved_highatomic) == ([U, M], 0)
        assert lists(a) == {(3, U): [0x1100]}


@pytest.mark.parametrize("series", SERIES)
def test_highatomic_reserve_of_a_multi_block_allocation(series):
    # An order-10 atomic allocation spans blocks 2 and 3. 5.10/6.1 reserve
    # the page's block only (set_pageblock_migratetype, 5.10 L2662, 6.1 L2933);
    # 6.12 (L2104) / 7.2 (L3472) change_pageblock_range both, and count
    # 1 << order. managed 204800: 1% is 2048, so every limit allows it.
    flags = ATOMIC | (ALLOC_HIGHATOMIC if series != "5.10" else 0)
    a = build(series, [M, M, U, U], free=[(0x1010, 4, M), (0x1400, 10, U)], managed=204800)
    assert a.allocate(0, 10, U, NORMAL, flags).pfn == 0x1400
    if series in ("5.10", "6.1"):
        assert (block_types(a), a.zones[0].nr_reserved_highatomic) == ([M, M, H, U], PB)
    else:
        assert (block_types(a), a.zones[0].nr_reserved_highatomic) == ([M, M, H, H], 2 * PB)
    assert lists(a) == {(4, M): [0x1010]}


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_highatomic_reserve_of_a_pcp_page(series):
    # An order-1 ALLOC_HIGHATOMIC request served from a non-empty pcp list:
    # 6.1 (get_page_from_freelist L4364) and 6.12 (L3565) reserve its block
    # whatever rmqueue took it from; 7.2 reserves only in rmqueue_buddy (L3255).
    a = build(series, [U, M], free=[(0x1100, 3, U)], pcp={(1, U): [0x1010]}, managed=51200)
    out = a.allocate(0, 1, U, NORMAL, ATOMIC | ALLOC_HIGHATOMIC)
    assert (out.pfn, out.kind) == (0x1010, "pcp")
    if series == "7.2":
        assert (block_types(a), lists(a)) == ([U, M], {(3, U): [0x1100]})
    else:
        assert (block_types(a), lists(a)) == ([H, M], {(3, H): [0x1100]})


@pytest.mark.parametrize("series", SERIES)
def test_boost_retry_is_gated_on_gfp_atomic_before_6_12(series):
    # min 10 + boost 200; 50 free pages. __GFP_HIGH|__GFP_KSWAPD_RECLAIM
    # (GFP_ATOMIC without __GFP_ATOMIC): the boosted min is halved to 105
    # (6.1+: and a quarter off, 79) and fails. 5.10 (zone_watermark_fast
    # L3703) and 6.1 (L4148) retry without the boost only for a gfp with
    # __GFP_ATOMIC, so the zone fails; 6.12 (L3327) / 7.2 (L3708) for
    # ALLOC_MIN_RESERVE, and min 10 -> 5 passes. GFP_ATOMIC passes everywhere.
    def state():
        return build(series, [U, M], free=[(0x1000, 5, U), (0x1020, 4, U)],
                     pcp={(0, U): [0x1040]}, watermarks=(10, 20, 30), boost=200)

    for gfp, ok in (("__GFP_HIGH|__GFP_KSWAPD_RECLAIM", series in ("6.12", "7.2")),
                    ("GFP_ATOMIC", True)):
        a = state()
        r = make_request(a, 0, gfp=gfp)
        out = a.allocate(0, 0, r.migratetype, r.highest_zoneidx, r.alloc_flags, r.slow_flags)
        assert out.pfn == (0x1040 if ok else None), gfp


# == model bugs found by these tests (fixed) ======================================

@pytest.mark.parametrize("series", SERIES)
def test_highatomic_allocation_reserves_its_pageblock(series):
    # managed 51200: 1% is one pageblock, so every series' limit
    # (5.10/6.1: managed/100 + pageblock_nr_pages; 6.12/7.2: ALIGN(managed/100,
    # pageblock_nr_pages), nothing under one block) allows one reservation.
    flags = ATOMIC | (ALLOC_HIGHATOMIC if series != "5.10" else 0)
    a = build(series, [U, M], free=[(0x1010, 4, U), (0x1100, 3, U)], managed=51200)
    out = a.allocate(0, 4, U, NORMAL, flags)
    assert out.pfn == 0x1010
    assert block_types(a) == [H, M]
    assert lists(a) == {(3, H): [0x1100]}
    assert a.zones[0].nr_reserved_highatomic == PB


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_nr_free_highatomic_is_loaded_once(series):
    # 48 free pages, 32 of them HIGHATOMIC: a GFP_KERNEL order-0 request sees
    # 48 - 32 = 16 usable pages > low watermark 0 (zone_watermark_fast 6.12
    # L3292, 7.2 L3673) and gets a page.
    a = build(series, [U, H], free=[(0x1010, 4, U), (0x1200, 5, H)], reserved_highatomic=PB)
    assert a.zones[0].nr_free_highatomic == 32
    assert a.allocate(0, 0, U, NORMAL, FAST).pfn == 0x1010


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_zone_below_high_is_cleared_only_above_high_without_reserves(series):
    # ZONE_BELOW_HIGH set (an allocation failed the high watermark). The free
    # of 0x1014 makes count 3 >= high 3 (high_min == high_max: nr_pcp_high
    # returns high, 6.12 L2657) and drains one page (clamp(1, 1, 2)). Then 49
    # pages are free, 32 of them HIGHATOMIC: 49 - 32 = 17 <= high watermark 20,
    # so the flag stays set.
    a = build(series, [M, H], free=[(0x1100, 4, M), (0x1200, 5, H)], reserved_highatomic=PB,
              pcp={(0, M): [0x1010, 0x1012]}, batch=1, high=3, watermarks=(0, 0, 20))
    a.zones[0].below_high = True
    assert a.free(0, 0x1014, 0) == [(0x1012, 0, M)]
    assert a.zones[0].below_high


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_boosted_min_watermark_is_ignored_for_min_reserve_order0(series):
    # 50 free pages; min 10 + boost 100 = 110 (wmark_pages). GFP_ATOMIC-like
    # flags: __zone_watermark_ok(110) halves min to 55 and fails; the retry
    # against the unboosted min (10 -> 5) passes, so get_page_from_freelist
    # goes to try_this_zone (already at the high-watermark check, 6.12 L3503,
    # 7.2 L3892, where the retry also replaces the high mark): a pcp hit.
    a = build(series, [U, M], free=[(0x1000, 5, U), (0x1020, 4, U), (0x1030, 1, U)],
              pcp={(0, U): [0x1040]}, watermarks=(10, 20, 30), boost=100)
    out = a.allocate(0, 0, U, NORMAL, ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE)
    assert out.pfn == 0x1040


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_high_order_non_block_does_not_pass_the_watermark_on_highatomic_only(series):
    # A GFP_NOWAIT-like order-1 attempt (ALLOC_NON_BLOCK, no __GFP_HIGH so no
    # ALLOC_HIGHATOMIC): 34 free pages pass the order-0 part, but no free
    # block of order >= 1 is on an UNMOVABLE/MOVABLE/RECLAIMABLE list, and
    # the HIGHATOMIC one does not count: the zone fails, nothing is taken.
    # (The model used to pass it and then take the HIGHATOMIC block as
    # rmqueue_buddy's last resort.)
    free = [(0x1001, 0, U), (0x1003, 0, U), (0x1200, 5, H)]
    a = build(series, [U, H], free=free, reserved_highatomic=PB)
    assert a.allocate(0, 1, U, NORMAL, ALLOC_WMARK_MIN | ALLOC_NON_BLOCK).pfn is None
    assert lists(a) == {(0, U): [0x1001, 0x1003], (5, H): [0x1200]}


def test_5_10_alloc_high_alone_still_counts_the_highatomic_reserve():
    # 48 free pages, nr_reserved_highatomic 512: an ALLOC_HIGH order-0 attempt
    # sees 48 - 512 usable pages and fails the min watermark 0.
    a = build("5.10", [U, H], free=[(0x1010, 4, U), (0x1200, 5, H)], reserved_highatomic=PB)
    assert a.allocate(0, 0, U, NORMAL, ALLOC_WMARK_MIN | ALLOC_MIN_RESERVE).pfn is None


def test_5_10_alloc_harder_alone_lowers_min_by_a_quarter():
    # 35 free pages, min 40: ALLOC_HARDER checks 40 - 40/4 = 30 < 35 and
    # passes; the pcp refill's first page is the order-0 head 0x1022.
    a = build("5.10", [U, M], free=[(0x1000, 5, U), (0x1020, 1, U), (0x1022, 0, U)],
              watermarks=(40, 50, 60))
    assert a.allocate(0, 0, U, NORMAL, ALLOC_WMARK_MIN | ALLOC_NON_BLOCK).pfn == 0x1022


@pytest.mark.parametrize("series", ["5.10", "6.1"])
def test_drain_mt_is_reread_when_the_zone_has_isolated_blocks(series):
    # Block 2 is isolated (nr_isolate_pageblock 1). 0x1012 was freed to the
    # MOVABLE list while block 0 was MOVABLE; block 0 is UNMOVABLE now. The
    # free of 0x1610 (block 3, MOVABLE) drains one page from the MOVABLE list's
    # tail: 0x1012, which goes to UNMOVABLE's free list.
    iso = _kernel(series).migratetypes.index("Isolate")
    a = build(series, [M, U, iso, M], pcp={(0, M): [0x1010, 0x1012]}, batch=1, high=3)
    a.zones[0].pageblocks[0] = U
    assert a.free(0, 0x1610, 0) == [(0x1012, 0, U)]


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_fallback_alike_pages_do_not_count_pcp_pages_as_movable(series):
    # MOVABLE block 0: 0x1000/7 free (128 pages) and 48 order-3 pcp entries
    # (0x1080-0x11ff, 384 pages); no other page. An UNMOVABLE order-4 request
    # falls back to 0x1000/7: movable 0, alike 512 - 128 - 0 = 384, and
    # 128 + 384 >= 256 claims the block (steal_suitable_fallback 6.1 L2859;
    # try_to_steal_block 6.12 L2021, try_to_claim_block 7.2 L2342).
    entries = list(range(0x1080, 0x1200, 8))
    a = build(series, [M, U], free=[(0x1000, 7, M)], pcp={(3, M): entries}, high=1000)
    out = a.allocate(0, 4, U, NORMAL, FAST)
    assert out.pfn == 0x1000
    assert ("extfrag", 0x1000, 7, True) in out.events
    assert block_types(a) == [U, U]


# == vmstat: pcp->high decay and drains with no free (6.12+) ====================
# Blocks M, U, R; lists[0] (order 0 UNMOVABLE) 0x1210 0x1212 0x1214 (tail),
# lists[1] thirteen MOVABLE pages 0x1010..0x1028 (tail), lists[2] two
# RECLAIMABLE ones: count 18. batch 2, so PCP_BATCH_SCALE_MAX (5) gives
# batch << 5 = 64.
U18 = [0x1210, 0x1212, 0x1214]
M18 = [0x1010 + 2 * i for i in range(13)]
R18 = [0x1410, 0x1412]


def decay_state(series, high, high_min=4, free_count=0):
    return build(series, [M, U, R], pcp={(0, U): U18, (0, M): M18, (0, R): R18}, batch=2,
                 high=high, pcp_fields={"high_min": high_min, "high_max": 64,
                                        "free_count": free_count})


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_decay_pcp_high_lowers_high_and_drains_from_lists_0(series):
    # decay_pcp_high (6.12 L2412, 7.2 L2564): high 16 > high_min 4, so
    # high = max3(18 - 64, 16 - (16 >> 3), 4) = 14; to_drain = 18 - 14 = 4, in
    # free_pcppages_bulk calls of min(to_drain, batch) = 2 from pindex 0, each
    # from list tails (list_last_entry): u2 u1 | u0, lists[0] is empty, round
    # robin to lists[1]: m12. Returned, not applied.
    a = decay_state(series, high=16)
    pcp = a.zones[0].pcp[0]
    drain = a.decay_pcp_high(a.zones[0], pcp)
    assert drain == [(U18[2], 0, U), (U18[1], 0, U), (U18[0], 0, U), (M18[12], 0, M)]
    assert pcp.high == 14
    assert pcp.count == 18 and pcp_lists(a)[(0, U)] == U18


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_decay_pcp_high_at_high_min_drains_nothing(series):
    # decay_pcp_high: pcp->high is not above high_min, so it stays; count 18
    # <= high 18: to_drain 0, no free_pcppages_bulk.
    a = decay_state(series, high=18, high_min=18)
    pcp = a.zones[0].pcp[0]
    assert a.decay_pcp_high(a.zones[0], pcp) == []
    assert pcp.high == 18


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_vmstat_drain_counts_the_silent_decays_before_it(series):
    # A vmstat drain seen: refresh_cpu_vm_stats (6.12 vmstat.c L839) runs
    # decay_pcp_high about once a second, and one that finds count <= high
    # after lowering it leaves no event. high 21: 21 - 2 = 19 >= 18 (silent);
    # then 19 - 2 = 17, to_drain 1: u2.
    a = decay_state(series, high=21)
    pcp = a.zones[0].pcp[0]
    assert a.vmstat_drain(a.zones[0], pcp) == [(U18[2], 0, U)]
    assert pcp.high == 17


def test_untraced_decays_bring_high_down_to_the_count():
    # 6.12-2cpu-fork-exec, cpu 1: the snapshot's pcp->high 893 (high_min 412),
    # the kernel drained on a free at count 782. decay_pcp_high's first half:
    # max3(782 - (31 << 5), 893 - (893 >> 3), 412) = 782: one silent decay.
    # Again down to 700: 782 - 97 = 685. From 420 it stops at high_min.
    a = build("6.12", [M, U], batch=31, high=893,
              pcp_fields={"high_min": 412, "high_max": 7061})
    z, pcp = a.zones[0], a.zones[0].pcp[0]
    pcp.count = 782
    assert a.untraced_decays(z, pcp, 782) == 1 and pcp.high == 782
    assert a.untraced_decays(z, pcp, 700) == 1 and pcp.high == 685
    pcp.high = 420
    assert a.untraced_decays(z, pcp, 0) == 1 and pcp.high == 412


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_drain_pages_zone_takes_everything_from_lists_0(series):
    # drain_pages_zone (6.12 L2470, 7.2 L2620), drain_all_pages' drain of a
    # pcp: free_pcppages_bulk(min(count, batch << 5) = 18, pindex 0) until
    # count is 0: every list in pindex order, each from its tail.
    a = decay_state(series, high=16)
    drain = a.drain_pages_zone(a.zones[0], a.zones[0].pcp[0])
    assert [p for p, _, _ in drain] == U18[::-1] + M18[::-1] + R18[::-1]


# == replay: the events of refills and drains ====================================

def replayed(snapshot, *lines):
    """Replay *lines* ((task-pid, event text), all on cpu 0, in order) on
    *snapshot*; returns the Replayer after its run."""
    from buddyscope.model.ftrace import parse_text
    from buddyscope.model.replay import Replayer

    text = "".join(f"  {who} [000] d..2. {ts}: {line}\n" for ts, (who, line) in enumerate(lines, 1))
    r = Replayer(snapshot)
    r.run(parse_text(text).events)
    return r


def zl(pfn, mt=U):
    return f"mm_page_alloc_zone_locked: page=(____ptrval____) pfn={pfn:#x} order=0 migratetype={mt} percpu_refill=1"


def drained(pfn, mt=U, order=0):
    return f"mm_page_pcpu_drain: page=(____ptrval____) pfn={pfn:#x} order={order} migratetype={mt}"


def freed(pfn, order=0):
    return f"mm_page_free: page=(____ptrval____) pfn={pfn:#x} order={order}"


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_bulk_refill_runs_nr_pcp_alloc(series):
    # alloc_pages_bulk (6.12 L4774) takes its pages with __rmqueue_pcplist,
    # which refills an empty list through nr_pcp_alloc (6.12 L3021, 7.2
    # L3264) like any pcp allocation: high = clamp(8, 8, 64) = 8, batch =
    # 4 << alloc_factor 1 = 8, pcp->high = min(8 + 8, 64) = 16, max_nr_alloc =
    # max(16 - 0 - 4, 4) = 12 >= 8: alloc_factor 2. (It does not halve
    # free_count: only rmqueue_pcplist does, 6.12 L3126.) The 8 pages go on
    # the tail; the call took the first four.
    snap = build_snapshot(series, [M, U], free=[(0x1208, 3, U)], batch=4, high=8,
                          pcp_fields={"high_min": 8, "high_max": 64, "alloc_factor": 1,
                                      "free_count": 6})
    who = "kthreadd-2"
    r = replayed(snap,
                 (who, "alloc_pages_bulk: (alloc_pages_bulk_noprof+0x4/0x630) gfp=0x2dc2 nr_pages=4"),
                 *[(who, zl(p)) for p in range(0x1208, 0x1210)],
                 (who, "alloc_pages_bulk_ret: (__vmalloc_node_range_noprof+0x254/0x810 "
                       "<- alloc_pages_bulk_noprof) nr_populated=4"))
    pcp = r.alloc.zones[0].pcp[0]
    assert (pcp.count, pcp.high, pcp.alloc_factor, pcp.free_count) == (4, 16, 2, 6)
    assert pcp_lists(r.alloc) == {(0, U): list(range(0x120c, 0x1210))}
    assert r.report.bulk_pages == 4


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_claimed_block_counts_in_the_refill(series):
    # rmqueue_bulk of 4 (nr_pcp_alloc: high_min == high_max 8, batch 4) with
    # only a MOVABLE order-9 block free: __rmqueue_claim takes it whole
    # (try_to_steal_block 6.12 L1973 / try_to_claim_block 7.2: current_order
    # >= pageblock_order, no __rmqueue_smallest, so only the extfrag event),
    # then __rmqueue_smallest traces 0x1201, 0x1202, 0x1203. The refill is
    # those four blocks, the claimed one first.
    snap = build_snapshot(series, [M, M], free=[(0x1200, 9, M)], batch=4, high=8)
    who = "sh-7"
    r = replayed(snap,
                 (who, "mm_page_alloc_extfrag: page=(____ptrval____) pfn=0x1200 alloc_order=0 "
                       "fallback_order=9 pageblock_order=9 alloc_migratetype=0 "
                       "fallback_migratetype=1 fragmenting=0 change_ownership=1"),
                 *[(who, zl(p)) for p in (0x1201, 0x1202, 0x1203)],
                 (who, "mm_page_alloc: page=(____ptrval____) pfn=0x1200 order=0 migratetype=0 "
                       "gfp_flags=GFP_KERNEL"))
    rep = r.report
    assert (rep.allocations, rep.hits, rep.refills, rep.refills_exact) == (1, 1, 1, 1)


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_drain_of_another_task_is_a_vmstat_drain(series):
    # A free by rm: count 19 < high 22, no drain. Then the kworker's vmstat
    # refresh (decay_pcp_high, 6.12 L2412) drains lists[0]'s tail: not rm's
    # free's drain. The model's prediction for it: one silent decay (22 -> 20,
    # count 19), then 20 -> 18 and to_drain 1: u2; pcp->high is 18 after.
    snap = build_snapshot(series, [M, U, R], pcp={(0, U): U18, (0, M): M18, (0, R): R18},
                          batch=2, high=22, pcp_fields={"high_min": 4, "high_max": 64})
    r = replayed(snap, ("rm-10", freed(0x1216)), ("kworker/0:1-20", drained(U18[2])))
    rep = r.report
    assert (rep.drains, rep.vmstat_drains, rep.vmstat_drains_exact, rep.unprompted_drains) == (0, 1, 1, 1)
    assert r.alloc.zones[0].pcp[0].high == 18


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_drain_after_a_silent_decay_resyncs_high(series):
    # The kernel drains on rm's free at count 19 where the model's high is 22:
    # its pcp->high had decayed with no event (22 -> 20 -> 18, decay_pcp_high's
    # first half, until <= 19). A miss, then high is 18: the next free (count
    # 17 + 1 = 18 >= 18; nr_pcp_free: clamp(free_count 2, batch 2, 16) = 2)
    # drains lists[0]'s tail, 0x1210 then 0x1216, as predicted.
    snap = build_snapshot(series, [M, U, R], pcp={(0, U): U18, (0, M): M18, (0, R): R18},
                          batch=2, high=22, pcp_fields={"high_min": 4, "high_max": 64})
    who = "rm-10"
    r = replayed(snap, (who, freed(0x1216)), (who, drained(U18[2])), (who, drained(U18[1])),
                 (who, freed(0x1218)), (who, drained(U18[0])), (who, drained(0x1216)),
                 (who, freed(0x121a)))
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.silent_decays, rep.vmstat_drains) == (2, 1, 1, 0)
    assert r.alloc.zones[0].pcp[0].high == 18


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_claim_of_a_block_typed_highatomic_only_6_12_refuses(series):
    # 6.12 try_to_steal_block re-reads the pageblock's own type and returns
    # NULL for HIGHATOMIC (L1963-1970: "can happen due to races"); 7.2
    # try_to_claim_block takes the type from its caller and has no check.
    a = build(series, [H, M], free=[(BASE, 3, M)])
    z = a.zones[0]
    a._path, a._events, a._refill = [], [], None   # what allocate() sets up
    got = a._try_to_claim_block(z, BASE, 3, 0, U, M, FAST, claim=True)
    if series == "6.12":
        assert got is None and a.pageblock_mt_of(z, BASE) == H
    else:
        assert got == BASE and a.pageblock_mt_of(z, BASE) == U


def _flagged_replay(snapshot, *lines):
    """Replay *lines* ((task-pid, flags, event text), all on cpu 0)."""
    from buddyscope.model.ftrace import parse_text
    from buddyscope.model.replay import Replayer

    text = "".join(f"  {who} [000] {flags} {ts}: {line}\n"
                   for ts, (who, flags, line) in enumerate(lines, 1))
    r = Replayer(snapshot)
    r.run(parse_text(text).events)
    return r


@pytest.mark.parametrize("kernel_took", ["below", "head"])
def test_softirq_frees_maybe_under_the_commit_windows_pcp_lock(kernel_took):
    # MADE UP in the kernel's format, in the shape of a real 7.2 trace
    # (sh frees a page, "....."; a softirq then frees two at preempt count
    # 2, "..s2.", as under the pcp lock free_frozen_page_commit takes after
    # mm_page_free, 7.2 L2977; or under two other locks). Traced as they
    # come, the two go on the pcp list (the committed 7.2 recordings have
    # 224 such frees: 192 later handed out of a pcp, none from the buddy). When the kernel
    # hands out the page below them, their trylock had failed: they go to
    # the buddy and the miss says why.
    snap = build_snapshot("7.2", [U, U], free=[(BASE + PB, 9, U)], pcp={(0, U): [BASE + 1]})
    alloc = "mm_page_alloc: page=(____ptrval____) pfn={:#x} order=0 migratetype=0 gfp_flags=GFP_KERNEL"
    took = BASE if kernel_took == "below" else BASE + 3
    # ksoftirqd's free (its own task: no lock of sh's) is handed out first.
    r = _flagged_replay(snap, ("sh-10", ".....", freed(BASE)),
                        ("sh-10", "..s2.", freed(BASE + 2)), ("sh-10", "..s2.", freed(BASE + 3)),
                        ("ksoftirqd/0-14", "..s..", freed(BASE + 4)),
                        ("sh-11", ".....", alloc.format(BASE + 4)),
                        ("sh-11", ".....", alloc.format(took)))
    rep, a = r.report, r.alloc
    if kernel_took == "below":
        assert dict(rep.reasons) == {"free_under_pcp_lock": 1}
        assert a.is_free(BASE + 2) and a.is_free(BASE + 3)
        assert pcp_lists(a) == {(0, U): [BASE + 1]}
    else:
        assert rep.hits == 2 and not rep.reasons
        assert pcp_lists(a) == {(0, U): [BASE + 2, BASE, BASE + 1]}
