"""
Why
---

Why an allocation fails (or would succeed) on a snapshot: the decisions of
``__alloc_pages`` for one request, zone by zone, as the kernel computes
them, and what the slowpath would try after.

- ``get_page_from_freelist`` over the zonelist: ``zone_watermark_fast`` /
  ``__zone_watermark_ok`` with every term (``NR_FREE_PAGES``, the mark with
  its boost, the highatomic and CMA pages a request may not count, the
  reserve reductions of its ALLOC_* flags, ``lowmem_reserve``, the
  order-by-order free-block test), then ``rmqueue``: the CPU's pcp list,
  ``__rmqueue_smallest`` of the request's migratetype, CMA, the fallback
  types (``fallbacks[]``, ``ALLOC_NOFRAGMENT``'s minimum order), the
  highatomic reserve;
- the fast path (``ALLOC_WMARK_LOW``), then the slowpath's first attempt
  (``gfp_to_alloc_flags``);
- beyond that, what the state can tell: whether direct compaction
  (``compaction_suitable`` with ``__fragmentation_index``) and direct
  reclaim would be tried, ``__GFP_NORETRY``, ``__GFP_RETRY_MAYFAIL``,
  ``__GFP_NOFAIL``, and whether ``warn_alloc`` prints "page allocation
  failure".

Works on counts alone (procfs): the free-block test and fallback need only
how many blocks each list holds; pcp lists without PFNs are known only by
their CPU's total, which the explanation says. Where kernel series differ,
the :class:`~buddyscope.model.profile.Profile` says how.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from buddyscope.model import allocator as A
from buddyscope.model.fragmentation import contig_page_info, fragmentation_index
from buddyscope.model.gfp import gfp_flag_table, gfp_names
from buddyscope.model.profile import Profile
from buddyscope.model.request import Request, RequestError, make_request
from buddyscope.model.snapshot import Snapshot, Zone

__all__ = (
    "Attempt", "BlockTest", "Explanation", "RequestError", "WatermarkCheck", "ZoneAttempt",
    "alloc_flag_names", "explain", "format_explanation",
)

#: PAGE_ALLOC_COSTLY_ORDER (include/linux/mmzone.h), all four series.
PAGE_ALLOC_COSTLY_ORDER = 3
#: sysctl_extfrag_threshold's default (mm/compaction.c), all four series.
EXTFRAG_THRESHOLD = 500

_WMARK = ("min", "low", "high")


def alloc_flag_names(flags: int, profile: Profile) -> str:
    """*flags* with the kernel's names (5.10 calls 0x10 ALLOC_HARDER and 0x20
    ALLOC_HIGH; 6.1+ ALLOC_NON_BLOCK and ALLOC_MIN_RESERVE)."""
    names = [f"ALLOC_WMARK_{_WMARK[flags & A.ALLOC_WMARK_MASK].upper()}"]
    table = [(A.ALLOC_NO_WATERMARKS, "NO_WATERMARKS"), (A.ALLOC_OOM, "OOM"),
             (A.ALLOC_NON_BLOCK, "HARDER" if profile.alloc_harder else "NON_BLOCK"),
             (A.ALLOC_MIN_RESERVE, "HIGH" if profile.alloc_harder else "MIN_RESERVE"),
             (A.ALLOC_CPUSET, "CPUSET"), (A.ALLOC_CMA, "CMA"), (A.ALLOC_NOFRAGMENT, "NOFRAGMENT"),
             (A.ALLOC_HIGHATOMIC, "HIGHATOMIC"), (A.ALLOC_KSWAPD, "KSWAPD")]
    names += [f"ALLOC_{n}" for bit, n in table if flags & bit]
    return "|".join(names)


@dataclasses.dataclass
class BlockTest:
    """One order of ``__zone_watermark_ok``'s free-block loop."""

    order: int
    nr_free: int
    #: Free blocks per migratetype name at this order (None: not known).
    per_migratetype: Optional[Dict[str, int]]
    #: The migratetypes whose blocks count for this request.
    usable: List[str]
    ok: bool


@dataclasses.dataclass
class WatermarkCheck:
    """``zone_watermark_fast`` for one zone, term by term."""

    mark_name: str
    #: ``_watermark[]`` + ``watermark_boost`` (``wmark_pages``).
    mark: int
    boost: int
    #: ``NR_FREE_PAGES``.
    free_pages: int
    #: ``__zone_watermark_unusable_free``: (1 << order) - 1 ...
    unusable_order: int
    #: ... + the highatomic pages the request may not use ...
    unusable_highatomic: int
    highatomic_term: str
    #: ... + the free CMA pages without ALLOC_CMA.
    unusable_cma: int
    #: The mark after the reserve reductions of the ALLOC_* flags.
    min: int
    reductions: str
    lowmem_reserve: int
    #: free_pages - unusable > min + lowmem_reserve.
    free_ok: bool
    #: The order-by-order test (order > 0 only).
    blocks: List[BlockTest]
    blocks_ok: bool
    #: The order-0 retry against the unboosted min (None: not tried).
    boost_retry: Optional[bool]
    ok: bool
    #: A block of the order this request may take is free (whatever the
    #: free-page test said).
    block_exists: bool = False

    @property
    def usable_free(self) -> int:
        return self.free_pages - self.unusable_order - self.unusable_highatomic - self.unusable_cma


@dataclasses.dataclass
class ZoneAttempt:
    """One zone of one ``get_page_from_freelist`` pass."""

    zone: str
    watermark: WatermarkCheck
    #: Set when the watermark passed: what ``rmqueue`` would take.
    served_by: Optional[str] = None
    #: How, in the kernel's words.
    how: str = ""
    #: The CPU's pcp list for (order, migratetype): pages on it; None: not a
    #: pcp order, or not known without PFNs.
    pcp_pages: Optional[int] = None
    pcp_note: str = ""
    #: Smallest order >= the request's with a free block, per migratetype.
    smallest: Dict[str, Optional[int]] = dataclasses.field(default_factory=dict)
    #: Blocks on the same (order, migratetype) pcp list of every CPU (with PFNs).
    pcp_by_cpu: Dict[int, int] = dataclasses.field(default_factory=dict)
    fallback: str = ""

    @property
    def ok(self) -> bool:
        return self.served_by is not None


@dataclasses.dataclass
class Attempt:
    """One ``get_page_from_freelist`` call (a second pass without
    ALLOC_NOFRAGMENT included)."""

    name: str
    alloc_flags: int
    flag_names: str
    zones: List[ZoneAttempt]
    #: The zones of the pass without ALLOC_NOFRAGMENT, when the first failed.
    retry_zones: List[ZoneAttempt] = dataclasses.field(default_factory=list)

    @property
    def served(self) -> Optional[ZoneAttempt]:
        for z in self.zones + self.retry_zones:
            if z.ok:
                return z
        return None


@dataclasses.dataclass
class Compaction:
    """``compaction_suitable`` for one zone."""

    zone: str
    #: ``COMPACT_SUCCESS``, ``COMPACT_SKIPPED``, ``COMPACT_NOT_SUITABLE_ZONE``
    #: or ``COMPACT_CONTINUE``.
    result: str
    fragindex: int
    detail: str


@dataclasses.dataclass
class Explanation:
    """Why one request fails or succeeds on one state."""

    kernel: str
    profile: str
    order: int
    gfp: str
    gfp_mask: Optional[int]
    migratetype: str
    cpu: int
    highest_zone: str
    counts_only: bool
    attempts: List[Attempt]
    #: ``__fragmentation_index`` per zone of the zonelist, in thousandths.
    fragindex: Dict[str, int]
    compaction: List[Compaction]
    #: The slowpath beyond its first attempt, step by step.
    slowpath: List[str]
    #: ``served``, ``fails`` or ``depends`` (on reclaim or compaction).
    verdict: str
    sentence: str
    notes: List[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# == counts of one zone ===========================================================


class _ZoneCounts:
    """What the decisions read from one zone, from PFN lists or counts."""

    def __init__(self, z: Zone, nr_mt: int, cma: Optional[int], free_source: str):
        self.z = z
        self.name = z.name
        self.zone_idx = A.ZONE_INDEX.get(z.name, 0)
        self.nr_free = [a.nr_free for a in z.free_area]
        self.counts: List[Optional[List[int]]] = []
        for a in z.free_area:
            c = [a.count(mt) for mt in range(nr_mt)]
            self.counts.append(None if any(x is None for x in c) else c)  # type: ignore[misc]
        self.known = all(c is not None for c in self.counts)
        vm = z.fields.get("vm_stat_nr_free_pages")
        self.free_pages = vm if free_source == "vm_stat" and vm is not None else z.nr_free_pages
        ha = A.MIGRATE_HIGHATOMIC
        self.nr_free_highatomic = z.fields.get("nr_free_highatomic")
        if self.nr_free_highatomic is None:
            self.nr_free_highatomic = sum((c[ha] << o) for o, c in enumerate(self.counts) if c)
        self.cma_free = 0
        if cma is not None:
            self.cma_free = sum((c[cma] << o) for o, c in enumerate(self.counts) if c)

    def blocks(self, order: int, mt: int) -> Optional[int]:
        c = self.counts[order] if order < len(self.counts) else None
        return None if c is None else c[mt]

    def smallest(self, order: int, mt: int) -> Optional[int]:
        """``__rmqueue_smallest``'s order: the first order >= *order* whose
        ``free_list[mt]`` is not empty."""
        for o in range(order, len(self.nr_free)):
            if self.blocks(o, mt):
                return o
        return None


# == the explanation ===============================================================


class _Why:
    def __init__(self, snap: Snapshot, profile: Profile, req: Request, free_source: str):
        self.snap, self.p, self.req = snap, profile, req
        k = snap.kernel
        self.mt_names = list(k.migratetypes)
        self.nr_orders = k.nr_page_orders
        self.pageblock_order = k.pageblock_order
        self.cma = _mt_index(self.mt_names, "CMA")
        self.zones = [_ZoneCounts(z, len(self.mt_names), self.cma, free_source)
                      for z in _zonelist(snap, req.highest_zoneidx)]
        self.counts_only = not snap.has_pfns
        if profile.alloc_harder:
            # 5.10: ALLOC_HARDER|ALLOC_OOM (__zone_watermark_unusable_free L3572).
            self.reserve_flags = A.ALLOC_NON_BLOCK | A.ALLOC_OOM
            self.highatomic_list_flags = A.ALLOC_NON_BLOCK | A.ALLOC_OOM
        else:
            self.reserve_flags = A.ALLOC_RESERVES
            self.highatomic_list_flags = A.ALLOC_HIGHATOMIC | A.ALLOC_OOM

    # -- watermarks ---------------------------------------------------------------
    def watermark(self, zc: _ZoneCounts, order: int, wmark: int, flags: int) -> WatermarkCheck:
        """``zone_watermark_fast`` (5.10 L3669, 6.1 L4114, 6.12 L3292, 7.2 L3673)."""
        z, p = zc.z, self.p
        name = _WMARK[wmark]
        mark = z.watermarks[name] + z.watermark_boost
        lowmem = _lowmem(z, self.req.highest_zoneidx)
        u_order = (1 << order) - 1
        u_ha, ha_term = 0, ""
        if not flags & self.reserve_flags:
            if p.highatomic_term_free:
                u_ha, ha_term = zc.nr_free_highatomic, "nr_free_highatomic"
            else:
                u_ha, ha_term = z.nr_reserved_highatomic, "nr_reserved_highatomic"
        u_cma = 0 if flags & A.ALLOC_CMA else zc.cma_free
        m, red = self._reduce(mark, flags)
        free = zc.free_pages - u_order - u_ha - u_cma
        # The order-0 shortcut of zone_watermark_fast: no reserve reductions,
        # unusable clamped to the free pages.
        fast0 = order == 0 and zc.free_pages - min(zc.free_pages, u_ha + u_cma) > mark + lowmem
        free_ok = free > m + lowmem
        blocks: List[BlockTest] = []
        blocks_ok = order == 0
        if free_ok and order > 0:
            for o in range(order, self.nr_orders):
                bt = self._block_test(zc, o, flags)
                blocks.append(bt)
                if bt.ok:
                    blocks_ok = True
                    break
        ok = fast0 or (free_ok and blocks_ok)
        exists = blocks_ok if free_ok else any(
            self._block_test(zc, o, flags).ok for o in range(order, self.nr_orders))
        retry = None
        gate = A.ALLOC_GFP_ATOMIC if p.boost_retry_gfp_atomic else A.ALLOC_MIN_RESERVE
        if not ok and order == 0 and flags & gate and z.watermark_boost \
                and flags & A.ALLOC_WMARK_MASK == A.ALLOC_WMARK_MIN:
            m0, _ = self._reduce(z.watermarks["min"], flags)
            retry = free > m0 + lowmem
            ok = retry
        return WatermarkCheck(name, mark, z.watermark_boost, zc.free_pages, u_order, u_ha, ha_term,
                              u_cma, m, red, lowmem, free_ok or fast0, blocks,
                              blocks_ok, retry, ok, exists)

    def _reduce(self, mark: int, flags: int):
        """The reserve reductions of ``__zone_watermark_ok`` (5.10 L3609; 6.1+
        only under ALLOC_RESERVES)."""
        m, said = mark, []
        if self.p.alloc_harder:
            if flags & A.ALLOC_MIN_RESERVE:
                m -= m // 2
                said.append("ALLOC_HIGH halves it")
            if flags & A.ALLOC_OOM:
                m -= m // 2
                said.append("ALLOC_OOM halves it")
            elif flags & A.ALLOC_NON_BLOCK:
                m -= m // 4
                said.append("ALLOC_HARDER takes a quarter")
        elif flags & A.ALLOC_RESERVES:
            if flags & A.ALLOC_MIN_RESERVE:
                m -= m // 2
                said.append("ALLOC_MIN_RESERVE halves it")
                if flags & A.ALLOC_NON_BLOCK:
                    m -= m // 4
                    said.append("ALLOC_NON_BLOCK takes a quarter")
            if flags & A.ALLOC_OOM:
                m -= m // 2
                said.append("ALLOC_OOM halves it")
        return m, ", ".join(said)

    def _block_test(self, zc: _ZoneCounts, o: int, flags: int) -> BlockTest:
        usable = list(range(A.MIGRATE_PCPTYPES))
        if self.cma is not None and flags & A.ALLOC_CMA:
            usable.append(self.cma)
        if flags & self.highatomic_list_flags:
            usable.append(A.MIGRATE_HIGHATOMIC)
        names = [self.mt_names[t] for t in usable]
        if not zc.nr_free[o]:
            return BlockTest(o, 0, None if not zc.known else {}, names, False)
        c = zc.counts[o]
        if c is None:
            # Counts only, no per-migratetype split: nr_free is all there is.
            return BlockTest(o, zc.nr_free[o], None, names, True)
        per = {self.mt_names[t]: n for t, n in enumerate(c) if n}
        return BlockTest(o, zc.nr_free[o], per, names, any(c[t] for t in usable))

    # -- rmqueue ------------------------------------------------------------------
    def pcp_info(self, za: ZoneAttempt, zc: _ZoneCounts) -> Optional[int]:
        """What the pcp lists hold for the request (read even when the
        watermark fails: it gates pcp hits too); the pindex, if any."""
        req = self.req
        order, mt = req.order, req.migratetype
        for t, name in enumerate(self.mt_names):
            za.smallest[name] = zc.smallest(order, t)
        pindex = _pindex(self.snap, order, mt)
        pcp = next((x for x in zc.z.pcp if x.cpu == req.cpu), None)
        if pindex is None:
            if not self.snap.kernel.pcp_lists and order <= PAGE_ALLOC_COSTLY_ORDER and pcp:
                za.pcp_note = (f"cpu {req.cpu} holds {pcp.count} pcp pages in all (which lists: "
                               "not known from procfs)")
            return None
        za.pcp_by_cpu = {x.cpu: len(x.lists[pindex]) for x in zc.z.pcp if x.lists is not None}
        if pcp is not None and pcp.lists is not None:
            za.pcp_pages = len(pcp.lists[pindex]) << order
            za.pcp_note = (f"cpu {req.cpu} pcp lists[{pindex}] holds "
                           f"{len(pcp.lists[pindex])} block(s) of order {order}")
        elif pcp is not None:  # no PFNs
            za.pcp_note = (f"cpu {req.cpu} holds {pcp.count} pcp pages in all (which list: "
                           "not known without PFNs)")
        return pindex

    def rmqueue(self, za: ZoneAttempt, zc: _ZoneCounts, flags: int) -> None:
        """``rmqueue``: the pcp list, then ``rmqueue_buddy``."""
        req, p = self.req, self.p
        order, mt = req.order, req.migratetype
        names = self.mt_names
        refill = ""
        pindex = self.pcp_info(za, zc)
        if pindex is not None and za.pcp_pages is not None:
            if za.pcp_pages:
                za.served_by, za.how = "pcp", f"the head of {za.pcp_note.split(' holds')[0]}"
                return
            refill = "the empty pcp list is refilled by rmqueue_bulk, its first block by "
        if self._highatomic_request(flags):
            o = zc.smallest(order, A.MIGRATE_HIGHATOMIC)
            if o is not None:
                za.served_by, za.how = "highatomic", (
                    f"__rmqueue_smallest(HighAtomic) first (a high-order atomic request): order {o}")
                return
        o = zc.smallest(order, mt)
        if o is not None:
            za.served_by, za.how = "buddy", refill + (f"__rmqueue_smallest: a free {names[mt]} block of "
                                             f"order {o}" + (f", split to {order}" if o > order else ""))
            return
        if self.cma is not None and flags & A.ALLOC_CMA:
            o = zc.smallest(order, self.cma)
            if o is not None:
                za.served_by, za.how = "cma", refill + f"__rmqueue_cma_fallback: a CMA block of order {o}"
                return
        fb = self._fallback(zc, flags)
        za.fallback = fb[1]
        if fb[0]:
            za.served_by, za.how = "fallback", refill + fb[1]
            return
        if not p.alloc_harder and flags & (A.ALLOC_OOM | A.ALLOC_NON_BLOCK):
            # rmqueue_buddy's last resort (6.1 L3770, 6.12 L3004, 7.2 L3238).
            o = zc.smallest(order, A.MIGRATE_HIGHATOMIC)
            if o is not None:
                za.served_by, za.how = "highatomic", (
                    f"the HighAtomic reserve as a last resort (ALLOC_NON_BLOCK/ALLOC_OOM): order {o}")
                return

    def _highatomic_request(self, flags: int) -> bool:
        if self.p.alloc_harder:
            return self.req.order > 0 and bool(flags & A.ALLOC_NON_BLOCK)
        return bool(flags & A.ALLOC_HIGHATOMIC)

    def _fallback(self, zc: _ZoneCounts, flags: int):
        """Whether ``__rmqueue_fallback`` (5.10, 6.1) or ``__rmqueue_claim`` /
        ``__rmqueue_steal`` (6.12, 7.2) finds a block of another type."""
        req, p = self.req, self.p
        order, mt = req.order, req.migratetype
        pbo = self.pageblock_order
        min_order = order
        nofrag = bool(flags & A.ALLOC_NOFRAGMENT)
        if nofrag and (order < pbo or p.nofragment_min_order_always):
            min_order = pbo
        names = self.mt_names
        cands = []
        for o in range(self.nr_orders - 1, max(order, min_order) - 1, -1):
            if not zc.nr_free[o]:
                continue
            for t in A.FALLBACKS[mt]:
                if zc.blocks(o, t):
                    cands.append((o, t))
                    break
        if not cands:
            lim = f" of order >= {max(order, min_order)}"
            why = (" (ALLOC_NOFRAGMENT: only whole pageblocks)" if min_order > order else "")
            if not zc.known:
                return False, f"fallback: not known without per-migratetype counts{why}"
            return False, (f"fallback: no {' or '.join(names[t] for t in A.FALLBACKS[mt])} "
                           f"block{lim}{why}")
        o, t = cands[0]
        # can_steal_fallback / should_try_claim_block: claims are refused only
        # to Movable below pageblock_order / 2.
        claim = o >= pbo or o >= pbo // 2 or mt != A.MIGRATE_MOVABLE
        if p.fallback == "claim":
            if claim:
                what = (f"__rmqueue_claim: the {names[t]} order-{o} head block"
                        + ("" if o >= pbo else " (claimed if half its block is free or alike, "
                           "else __rmqueue_steal)"))
            else:
                o2, t2 = cands[-1]
                what = f"__rmqueue_steal: a {names[t2]} block of order {o2}"
        else:
            if not claim:
                o2, t2 = cands[-1]
                what = f"__rmqueue_fallback: steals a {names[t2]} block of order {o2} (smallest first)"
            else:
                what = f"__rmqueue_fallback: steals the {names[t]} order-{o} head block"
        return True, what + (" (ALLOC_NOFRAGMENT)" if nofrag and min_order > order else "")

    # -- get_page_from_freelist ---------------------------------------------------
    def attempt(self, name: str, flags: int) -> Attempt:
        a = Attempt(name, flags, alloc_flag_names(flags, self.p), self._pass(flags))
        if a.served is None and flags & A.ALLOC_NOFRAGMENT:
            # get_page_from_freelist: fragmenting is better than failing
            # (5.10 L3797, 6.1 L4241, 6.12 L3420, 7.2 L3976).
            a.retry_zones = self._pass(flags & ~A.ALLOC_NOFRAGMENT)
        return a

    def _pass(self, flags: int) -> List[ZoneAttempt]:
        out = []
        for zc in self.zones:
            wm = self.watermark(zc, self.req.order, flags & A.ALLOC_WMARK_MASK, flags)
            za = ZoneAttempt(zc.name, wm)
            out.append(za)
            if flags & A.ALLOC_NO_WATERMARKS or wm.ok:
                self.rmqueue(za, zc, flags)
                if za.ok:
                    break
            else:
                self.pcp_info(za, zc)
        return out

    # -- compaction ---------------------------------------------------------------
    def compaction(self) -> List[Compaction]:
        """``compaction_suitable`` per zone (5.10/6.1 mm/compaction.c:
        ``__compaction_suitable`` then the fragindex test for costly orders)."""
        order, out = self.req.order, []
        flags = self.req.slow_flags
        for zc in self.zones:
            fi = self.fragindex(zc)
            wm = self.watermark(zc, order, flags & A.ALLOC_WMARK_MASK, flags)
            z = zc.z
            if wm.free_ok and wm.blocks_ok:
                out.append(Compaction(zc.name, "COMPACT_SUCCESS", fi,
                                      "the watermark for this order is already met"))
                continue
            base = "low" if order > PAGE_ALLOC_COSTLY_ORDER else "min"
            mark = z.watermarks[base] + z.watermark_boost + (2 << order)   # compact_gap
            # __zone_watermark_ok(zone, 0, mark, highest, ALLOC_CMA, free):
            # no reductions, the highatomic term applies.
            ha = zc.nr_free_highatomic if self.p.highatomic_term_free else z.nr_reserved_highatomic
            usable = zc.free_pages - ha
            lowmem = _lowmem(z, self.req.highest_zoneidx)
            if not usable > mark + lowmem:
                out.append(Compaction(zc.name, "COMPACT_SKIPPED", fi,
                                      f"free {usable:,} not above {base} + compact_gap "
                                      f"{mark:,}" + (f" + protection {lowmem:,}" if lowmem else "")
                                      + ": too little free memory to migrate into"))
                continue
            if order > PAGE_ALLOC_COSTLY_ORDER and 0 <= fi <= EXTFRAG_THRESHOLD:
                out.append(Compaction(zc.name, "COMPACT_NOT_SUITABLE_ZONE", fi,
                                      f"extfrag index {fi / 1000:.3f} <= extfrag_threshold "
                                      f"{EXTFRAG_THRESHOLD / 1000:.3f}: lack of memory"))
                continue
            out.append(Compaction(zc.name, "COMPACT_CONTINUE", fi,
                                  f"free {usable:,} above {base} + compact_gap {mark:,}; "
                                  f"extfrag index {fi / 1000:.3f}"))
        return out

    def fragindex(self, zc: _ZoneCounts) -> int:
        return fragmentation_index(self.req.order, contig_page_info(zc.nr_free, self.req.order))


def _mt_index(names: List[str], name: str) -> Optional[int]:
    for i, n in enumerate(names):
        if n.lower() == name.lower():
            return i
    return None


def _lowmem(z: Zone, highest_zoneidx: int) -> int:
    lr = z.lowmem_reserve
    return lr[highest_zoneidx] if highest_zoneidx < len(lr) else 0


def _zonelist(snap: Snapshot, highest_zoneidx: int) -> List[Zone]:
    """``ZONELIST_FALLBACK`` of node 0 from the highest usable zone down."""
    zs = [z for z in snap.zones if A.ZONE_INDEX.get(z.name, 0) <= highest_zoneidx
          and z.managed_pages > 0]
    return sorted(zs, key=lambda z: (z.node, -A.ZONE_INDEX.get(z.name, 0)))


def _pindex(snap: Snapshot, order: int, mt: int) -> Optional[int]:
    for i, pl in enumerate(snap.kernel.pcp_lists):
        if pl.order == order and mt in pl.migratetypes:
            return i
    return None


class _Kernel:
    """What :func:`~buddyscope.model.request.make_request` reads of an
    allocator, from a snapshot alone (counts suffice)."""

    def __init__(self, snap: Snapshot, profile: Profile):
        k = snap.kernel
        self.profile = profile
        self.nr_orders = k.nr_page_orders
        self.nr_cpus = k.nr_cpus
        self.mobility_disabled = False
        self.mt_names = list(k.migratetypes)
        self.nr_mt = len(self.mt_names)
        self.MIGRATE_CMA = _mt_index(self.mt_names, "CMA")
        self._snap = snap
        self.zones = [_ZoneIdx(z) for z in snap.zones]

    def zonelist(self, highest_zoneidx: int):
        return [_ZoneIdx(z) for z in _zonelist(self._snap, highest_zoneidx)]


class _ZoneIdx:
    def __init__(self, z: Zone):
        self.zone_idx = A.ZONE_INDEX.get(z.name, 0)
        self.managed = z.managed_pages
        self.name = z.name


# == the slowpath beyond its first attempt ===========================================


def _slowpath(w: _Why, comp: List[Compaction]) -> tuple[List[str], str]:
    """``__alloc_pages_slowpath`` after its first ``get_page_from_freelist``
    (5.10 L4649, 6.1 L5097, 6.12 L4282, 7.2 L4751): what it would try, and
    how it ends when nothing is freed. Returns (steps, outcome)."""
    req, p = w.req, w.p
    bits = gfp_flag_table(p.name)
    g = req.gfp or 0
    order = req.order
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    reclaim = bool(g & bits["__GFP_DIRECT_RECLAIM"])
    # gfp_compaction_allowed (all four: CONFIG_COMPACTION && __GFP_IO).
    can_compact = bool(g & bits["__GFP_IO"])
    thisnode = bool(g & bits["__GFP_THISNODE"])
    noretry = bool(g & bits["__GFP_NORETRY"])
    mayfail = bool(g & bits["__GFP_RETRY_MAYFAIL"])
    nofail = bool(g & bits["__GFP_NOFAIL"])
    nowarn = bool(g & bits["__GFP_NOWARN"])
    steps: List[str] = []
    fail = "page allocation failure" + (" (not printed: __GFP_NOWARN)" if nowarn else
                                        " (warn_alloc prints it)")
    kswapd = bool(req.slow_flags & A.ALLOC_KSWAPD)
    if kswapd:
        steps.append("wake_all_kswapds: kswapd reclaims in the background (not in this state)")
    if not reclaim:
        steps.append("no __GFP_DIRECT_RECLAIM: no direct compaction, no direct reclaim; the "
                     "retry with the same flags fails the same way (reserves only for "
                     "PF_MEMALLOC / OOM-victim tasks, which the state does not show)")
        if nofail:
            steps.append("__GFP_NOFAIL without direct reclaim: WARN, then fail")
        return steps, "fails: " + fail
    compactable = [c for c in comp if c.result == "COMPACT_CONTINUE"]
    if order > 0 and can_compact:
        first = costly or req.migratetype != A.MIGRATE_MOVABLE
        where = ", ".join(f"{c.zone} {c.result}" for c in comp)
        steps.append(("direct compaction before reclaim (costly order or not Movable): "
                      if first else "direct compaction after reclaim: ")
                     + f"compaction_suitable: {where}")
        if first and costly and noretry:
            if p.noretry_costly_stops_on_skipped_compaction:
                if not compactable:
                    steps.append("costly order with __GFP_NORETRY and compaction skipped in "
                                 "every zone: nopage")
                    return steps, "fails: " + fail
                if thisnode:
                    steps.append("costly __GFP_NORETRY|__GFP_THISNODE: nopage if that "
                                 "compaction fails")
                    return steps, "depends on compaction; else " + fail
            elif thisnode:
                steps.append("__GFP_NORETRY|__GFP_THISNODE: nopage if that compaction fails "
                             "(compact_first)")
                return steps, "depends on compaction; else " + fail
    elif order > 0:
        steps.append("no compaction: the gfp lacks __GFP_IO (gfp_compaction_allowed)")
    steps.append("direct reclaim (__alloc_pages_direct_reclaim): what it frees is not in "
                 "this state")
    if noretry:
        steps.append("__GFP_NORETRY: one round of reclaim/compaction, then nopage")
        end = "depends on one round of reclaim" + (" and compaction" if compactable else "")
        return steps, f"{end}; else {fail}"
    if costly and not mayfail:
        steps.append("costly order without __GFP_RETRY_MAYFAIL: no retry, no OOM killer")
        end = "depends on one round of reclaim" + (" and compaction" if compactable else "")
        return steps, f"{end}; else " + ("loops (__GFP_NOFAIL)" if nofail else fail)
    if mayfail:
        steps.append("__GFP_RETRY_MAYFAIL: retries while reclaim makes progress "
                     "(should_reclaim_retry, should_compact_retry), never the OOM killer")
        return steps, "depends on reclaim" + (" and compaction" if compactable else "") \
            + ("; never fails (__GFP_NOFAIL)" if nofail else f"; else {fail}")
    steps.append("retries while reclaim makes progress, then the OOM killer "
                 "(__alloc_pages_may_oom)" + ("" if req.highest_zoneidx >= A.ZONE_INDEX["Normal"]
                                            else "; not for a request below ZONE_NORMAL"))
    if nofail:
        return steps, "never fails (__GFP_NOFAIL loops)"
    return steps, "does not fail for lack of memory: reclaim, compaction and the OOM killer " \
                  "run until it is served"


# == entry point =======================================================================


def explain(snap: Snapshot, profile: Profile, order: int, gfp: Optional[str] = None,
            cpu: int = 0, migratetype: Optional[str] = None,
            free_source: str = "vm_stat") -> Explanation:
    """Why a request of *order* with *gfp* on *cpu* fails or succeeds on
    *snap*, as *profile*'s kernel decides it.

    :param free_source: ``"vm_stat"``: ``NR_FREE_PAGES`` as the kernel's
        counter held it (what its watermark check reads); ``"lists"``: the
        pages on the free lists (what :class:`~buddyscope.model.allocator.Allocator`
        counts).
    :raises RequestError: a request the kernel would refuse.
    """
    kern = _Kernel(snap, profile)
    req = make_request(kern, order, cpu, gfp=gfp, migratetype=migratetype)  # type: ignore[arg-type]
    w = _Why(snap, profile, req, free_source)
    if not w.zones:
        raise RequestError("no populated zone for this request in the snapshot")
    attempts = [w.attempt("fast path", req.alloc_flags)]
    if attempts[0].served is None:
        attempts.append(w.attempt("slowpath, first attempt", req.slow_flags))
    fragindex = {zc.name: w.fragindex(zc) for zc in w.zones}
    served = attempts[-1].served
    comp = w.compaction() if order > 0 and served is None else []
    names = kern.mt_names
    notes = []
    if w.counts_only:
        notes.append("counts only (no PFNs): pcp lists are known by their CPU's total, "
                     "fallback claims by type and order, not by page")
    if served is not None:
        slow, verdict = [], "served"
        sentence = _served_sentence(w, attempts, served)
    else:
        slow, end = _slowpath(w, comp)
        verdict = "fails" if end.startswith("fails") else "depends"
        sentence = _failure_sentence(w, attempts[-1], fragindex, comp) + "; " + end
    return Explanation(
        kernel=snap.kernel.release, profile=profile.name, order=req.order,
        gfp=req.gfp_text if gfp is None else gfp_names(req.gfp or 0, profile.name),
        gfp_mask=req.gfp, migratetype=names[req.migratetype], cpu=req.cpu,
        highest_zone=_zone_name(req.highest_zoneidx), counts_only=w.counts_only,
        attempts=attempts, fragindex=fragindex, compaction=comp, slowpath=slow,
        verdict=verdict, sentence=sentence, notes=notes)


def _zone_name(idx: int) -> str:
    for n, i in A.ZONE_INDEX.items():
        if i == idx:
            return n
    return str(idx)


def _wm_words(wm: WatermarkCheck) -> str:
    usable = wm.usable_free
    rel = "above" if wm.free_ok else "at or below"
    s = f"free {usable:,}"
    if usable != wm.free_pages:
        s += f" (of {wm.free_pages:,})"
    s += f" {rel} {wm.mark_name} {wm.min:,}"
    if wm.min != wm.mark:
        s += f" (lowered from {wm.mark:,}: {wm.reductions})"
    if wm.lowmem_reserve:
        s += f" + lowmem_reserve {wm.lowmem_reserve:,}"
    return s


def _served_sentence(w: _Why, attempts: List[Attempt], za: ZoneAttempt) -> str:
    a = attempts[-1]
    where = "the fast path" if len(attempts) == 1 else "the slowpath's first attempt"
    if za in a.retry_zones:
        where += " (second pass, without ALLOC_NOFRAGMENT)"
    return f"zone {za.zone}: {_wm_words(za.watermark)}; served by {where}: {za.how}"


def _failure_sentence(w: _Why, a: Attempt, fi: Dict[str, int], comp: List[Compaction]) -> str:
    parts = []
    order = w.req.order
    zones = a.retry_zones or a.zones
    for za in zones:
        wm = za.watermark
        s = f"zone {za.zone}: {_wm_words(wm)}"
        f = fi.get(za.zone, 0)
        if wm.free_ok and not wm.blocks_ok:
            used = [n for n in wm.blocks[0].usable] if wm.blocks else []
            others = sorted({m for b in wm.blocks for m in (b.per_migratetype or {})
                             if m not in used})
            s += f" but no free block of order ≥ {order}"
            s += f" outside {', '.join(others)}" if others else ""
            if za.pcp_pages:
                s += (f" (cpu {w.req.cpu}'s pcp list holds {za.pcp_pages >> order} such "
                      "block(s), but the watermark gates pcp hits too)")
            s += f"; extfrag index {f / 1000:.3f}: " + _frag_words(f, order)
        elif wm.ok and not za.ok:
            s += f" but rmqueue finds nothing ({za.fallback})"
        elif not wm.free_ok:
            there = []
            if wm.block_exists and order > 0:
                there.append(f"a free block of order ≥ {order} is there")
            if za.pcp_pages:
                there.append(f"cpu {w.req.cpu}'s pcp list holds {za.pcp_pages:,} pages")
            if there:
                s += ", though " + " and ".join(there)
            s += ": lack of free memory" + _held_back(wm)
            if order > 0 and f >= 0:
                s += f"; extfrag index {f / 1000:.3f}"
        parts.append(s)
    return "; ".join(parts)


def _held_back(wm: WatermarkCheck) -> str:
    """Which reserve turned a pass into a failure, if one alone did."""
    line = wm.min + wm.lowmem_reserve
    if wm.lowmem_reserve and wm.usable_free > wm.min:
        return ", held back by lowmem_reserve"
    if wm.unusable_highatomic and wm.usable_free + wm.unusable_highatomic > line:
        return (f", held back by the HighAtomic reserve ({wm.highatomic_term} "
                f"{wm.unusable_highatomic:,})")
    if wm.unusable_cma and wm.usable_free + wm.unusable_cma > line:
        return f", held back by free CMA pages ({wm.unusable_cma:,}, no ALLOC_CMA)"
    return ""


def _frag_words(f: int, order: int) -> str:
    if order == 0:
        return "order 0 cannot be fragmented: lack of memory"
    if f < 0:
        return "a block of that order is free, but not one this request may take"
    if f > EXTFRAG_THRESHOLD:
        return "fragmentation, compaction would help"
    return "lack of memory, reclaim must free pages first"


# == text ================================================================================


def format_explanation(e: Explanation) -> str:
    """The explanation as the CLI prints it."""
    out = [f"kernel {e.kernel}, profile {e.profile}: order {e.order} {e.gfp} "
           f"({e.migratetype}, highest zone {e.highest_zone}) on cpu {e.cpu}"]
    out += [f"note: {n}" for n in e.notes]
    for a in e.attempts:
        out.append(f"{a.name}: {a.flag_names}")
        for label, zones in (("", a.zones), ("  again without ALLOC_NOFRAGMENT:", a.retry_zones)):
            if label and zones:
                out.append(label)
            for za in zones:
                out.extend(_zone_lines(za, e.order))
    if e.fragindex:
        out.append("fragmentation index (__fragmentation_index) for order "
                   f"{e.order}: " + ", ".join(f"{z} {v / 1000:.3f}" for z, v in e.fragindex.items()))
    for c in e.compaction:
        out.append(f"compaction_suitable {c.zone}: {c.result} ({c.detail})")
    if e.slowpath:
        out.append("slowpath after its first attempt:")
        out += [f"  {s}" for s in e.slowpath]
    out.append("")
    out.append(e.sentence)
    return "\n".join(out)


def _zone_lines(za: ZoneAttempt, order: int) -> List[str]:
    wm = za.watermark
    lines = [f"  zone {za.zone}: watermark {'ok' if wm.ok else 'FAILS'}"]
    un = [f"(1<<{order})-1 = {wm.unusable_order}"]
    if wm.highatomic_term:
        un.append(f"{wm.highatomic_term} {wm.unusable_highatomic}")
    if wm.unusable_cma:
        un.append(f"free CMA {wm.unusable_cma}")
    lines.append(f"    NR_FREE_PAGES {wm.free_pages:,} - unusable ({' + '.join(un)}) = "
                 f"{wm.usable_free:,}")
    mark = f"{wm.mark_name} {wm.mark:,}" + (f" (boost {wm.boost:,})" if wm.boost else "")
    if wm.min != wm.mark:
        mark += f" -> {wm.min:,} ({wm.reductions})"
    lines.append(f"    vs {mark} + lowmem_reserve {wm.lowmem_reserve:,}: "
                 f"{'above' if wm.free_ok else 'not above'}")
    for b in wm.blocks:
        per = ("?" if b.per_migratetype is None else
               ", ".join(f"{k} {v}" for k, v in b.per_migratetype.items()) or "none")
        lines.append(f"    order {b.order}: nr_free {b.nr_free} ({per}) -> "
                     f"{'a usable block' if b.ok else 'none usable'} "
                     f"[{'/'.join(b.usable)}]")
    if wm.boost_retry is not None:
        lines.append(f"    retry against the unboosted min: {'ok' if wm.boost_retry else 'fails'}")
    if za.pcp_note:
        others = {c: n for c, n in za.pcp_by_cpu.items() if n}
        lines.append(f"    pcp: {za.pcp_note}" + (
            "; blocks on that list per cpu: " + ", ".join(f"cpu {c} {n}" for c, n in others.items())
            if others else ""))
    if za.smallest:
        lines.append("    smallest free block of order >= " + str(order) + " per migratetype: "
                     + ", ".join(f"{m} {'-' if o is None else o}" for m, o in za.smallest.items()))
    if wm.ok:
        lines.append(f"    rmqueue: {za.how if za.ok else 'nothing: ' + za.fallback}")
    return lines
