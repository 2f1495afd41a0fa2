"""
Allocator
---------

A pure-Python mirror of the buddy allocator's state and of the kernel
functions that change it: the free lists (``free_area[order].free_list[mt]``
as doubly linked lists in the kernel's order), the per-CPU page lists
(``per_cpu_pages.lists[pindex]``), pageblock migratetypes, and the counters
the decisions read. Allocation follows ``get_page_from_freelist`` ->
``rmqueue`` -> ``rmqueue_pcplist`` / ``rmqueue_buddy`` -> ``__rmqueue`` ->
``__rmqueue_smallest`` / fallback; freeing follows the pcp commit,
``free_pcppages_bulk`` and ``__free_one_page``. Where kernel series differ the
code asks its :class:`~buddyscope.model.profile.Profile`.

Every change goes through a few primitives that can be journaled, so a
prediction can be made on the live state and rolled back (see
:meth:`Allocator.trial`).

Line references (``L1234``) are to ``mm/page_alloc.c``, unless another file
is named, of Debian's ``linux-source`` packages 5.10.262-1, 6.1.192-3,
6.12.118-1 and 7.2.13-1.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from buddyscope.errors import BuddyscopeError
from buddyscope.model.pfnarray import slices
from buddyscope.model.profile import Profile, detect_profile
from buddyscope.model.snapshot import Snapshot

__all__ = (
    "ALLOC_CMA", "ALLOC_GFP_ATOMIC", "ALLOC_HIGHATOMIC", "ALLOC_KSWAPD", "ALLOC_NOFRAGMENT",
    "Allocator", "ModelError", "Outcome", "Step", "ZONE_INDEX",
)

# enum migratetype (include/linux/mmzone.h): the first four never move.
MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_HIGHATOMIC = 0, 1, 2, 3
MIGRATE_PCPTYPES = 3

# enum zone_type on x86_64 (include/linux/mmzone.h): the index into
# lowmem_reserve[] and the order of the zonelist (highest first).
ZONE_INDEX = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3, "Device": 4}

# alloc_flags (mm/internal.h). The values that differ by series (HARDER /
# NON_BLOCK, HIGH / MIN_RESERVE) are not needed apart here: the model keeps
# its own names for what it uses.
ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH = 0, 1, 2
ALLOC_WMARK_MASK = 3
ALLOC_NO_WATERMARKS = 0x04
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10     # ALLOC_HARDER in 5.10
ALLOC_MIN_RESERVE = 0x20   # ALLOC_HIGH in 5.10
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM
# Not a kernel alloc flag: the request's gfp has __GFP_ATOMIC, which 5.10/6.1
# zone_watermark_fast read from the gfp itself (5.10 L3703, 6.1 L4148).
ALLOC_GFP_ATOMIC = 0x10000

# fallbacks[] (5.10 L2337, 6.1 L2621, 6.12 L1666, 7.2 L1921): same content.
FALLBACKS = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}

# enum rmqueue_mode (Debian 6.12, 7.2 __rmqueue).
RMQUEUE_NORMAL, RMQUEUE_CMA, RMQUEUE_CLAIM, RMQUEUE_STEAL = range(4)


class ModelError(BuddyscopeError):
    """A request the kernel would refuse, or a state the model cannot hold."""


@dataclasses.dataclass
class Step:
    """One thing the allocator did, in the kernel's words."""

    #: ``pcp_hit``, ``pcp_refill``, ``buddy`` (``rmqueue_buddy``), ``split``
    #: (``expand``), ``cma``, ``fallback`` (5.10/6.1 ``__rmqueue_fallback``),
    #: ``claim`` / ``steal`` (6.12+), ``highatomic``, ``zone_skip``
    #: (watermark), ``failed``.
    kind: str
    detail: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        d = self.detail
        if self.kind == "pcp_hit":
            return f"pcp hit: cpu {d['cpu']} {d['zone']} lists[{d['pindex']}] head"
        if self.kind == "pcp_refill":
            pages = d["pages"]
            shown = ", ".join(hex(p) for p in pages[:4]) + (", ..." if len(pages) > 4 else "")
            return (f"pcp refill: rmqueue_bulk asked {d['asked']}, got {len(pages)} "
                    f"to cpu {d['cpu']} lists[{d['pindex']}] tail ({shown})")
        if self.kind == "split":
            pieces = ", ".join(f"{hex(p)}/{o}" for p, o in d["pieces"])
            return (f"split {hex(d['pfn'])} order {d['from_order']} -> {d['to_order']} "
                    f"({d['migratetype']}): {pieces or 'nothing'} to list heads")
        if self.kind == "fallback":
            return (f"fallback: {d['fallback_migratetype']} order {d['fallback_order']} "
                    f"block {hex(d['pfn'])} stolen for {d['migratetype']}"
                    f"{', block claimed' if d['claimed'] else ''}"
                    f"{', free pages moved' if d.get('moved') else ''}")
        if self.kind in ("claim", "steal"):
            return (f"{self.kind}: {d['fallback_migratetype']} order {d['fallback_order']} "
                    f"{hex(d['pfn'])} for {d['migratetype']}"
                    f"{', block claimed' if d.get('claimed') else ''}")
        if self.kind == "zone_skip":
            return f"zone {d['zone']} skipped: {d['why']}"
        if self.kind == "buddy":
            return f"rmqueue_buddy: {d['zone']} order {d['order']} {d['migratetype']}"
        return self.kind + (" " + ", ".join(f"{k}={v}" for k, v in d.items()) if d else "")


@dataclasses.dataclass
class Outcome:
    """What one allocation did: the block it returned and how."""

    pfn: Optional[int]
    order: int
    zone: Optional[str]
    path: List[Step]
    #: The page-removal events it would make the kernel trace, in order:
    #: ``("zone_locked", pfn)`` and ``("extfrag", pfn, fallback_order,
    #: change_ownership)``.
    events: List[tuple]
    #: A pcp refill's pages in list order (the first is the one returned).
    refill: Optional[List[int]] = None

    @property
    def kind(self) -> str:
        """The path in one word: ``pcp``, ``refill``, ``buddy``, ``fallback``
        or ``failed``."""
        if self.pfn is None:
            return "failed"
        # One pass, no set: this is read for every replayed allocation.
        refill = hit = False
        for s in self.path:
            k = s.kind
            if k == "fallback" or k == "claim" or k == "steal":
                return "fallback"
            if k == "pcp_refill":
                refill = True
            elif k == "pcp_hit":
                hit = True
        return "refill" if refill else "pcp" if hit else "buddy"


class _Pcp:
    """``struct per_cpu_pages`` of one CPU in one zone."""

    __slots__ = ("cpu", "count", "high", "batch", "high_min", "high_max", "free_factor",
                 "alloc_factor", "free_count", "flags", "lists")

    def __init__(self, cpu: int, count: int, high: int, batch: int, fields: dict, nr_lists: int):
        self.cpu = cpu
        self.count = count
        self.high = high
        self.batch = batch
        self.high_min = fields.get("high_min", high)
        self.high_max = fields.get("high_max", high)
        self.free_factor = fields.get("free_factor", 0)
        self.alloc_factor = fields.get("alloc_factor", 0)
        self.free_count = fields.get("free_count", 0)
        self.flags = fields.get("flags", 0)
        self.lists: List[Deque[int]] = [collections.deque() for _ in range(nr_lists)]


# per_cpu_pages.flags (6.12 mmzone.h): PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH.
PCPF_PREV_FREE_HIGH_ORDER = 1 << 0
PCPF_FREE_HIGH_BATCH = 1 << 1


class _Zone:
    """``struct zone``: what the model reads and changes."""

    __slots__ = ("index", "name", "node", "zone_idx", "start_pfn", "end_pfn", "managed",
                 "watermarks", "boost", "lowmem_reserve", "nr_reserved_highatomic",
                 "nr_free_highatomic", "free_pages", "cma_free", "nr_free", "pb_base",
                 "pageblocks", "pcp", "below_high", "boosted", "nr_isolate_pageblock",
                 "reclaim_active", "vm_global", "vm_diff", "stat_threshold", "vm_pending")

    def contains(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn


def _normal_threshold(managed: int, nr_cpus: int) -> int:
    """``calculate_normal_threshold`` (mm/vmstat.c, 4 KiB pages): memory
    in 128 MiB units."""
    mem = managed >> 15
    return min(125, 2 * nr_cpus.bit_length() * (1 + mem.bit_length()))


class Allocator:
    """The allocator state of one snapshot, and the kernel's ways of changing it."""

    def __init__(self, snapshot: Snapshot, profile: Optional[Profile] = None):
        if not snapshot.has_pfns:
            raise ModelError(
                "the model needs the free lists' PFNs; this snapshot has only counts "
                f"(source: {snapshot.capture.source}): read it with drgn (--qmp, --vmcore, --live)"
            )
        k = snapshot.kernel
        self.snapshot_kernel = k
        self.profile = profile or detect_profile(snapshot)
        self.nr_orders = k.nr_page_orders
        self.pageblock_order = k.pageblock_order
        self.pageblock_nr_pages = 1 << k.pageblock_order
        self.nr_cpus = k.nr_cpus
        self.mt_names = list(k.migratetypes)
        self.nr_mt = len(self.mt_names)
        self.MIGRATE_CMA = self._mt_index("CMA")
        self.MIGRATE_ISOLATE = self._mt_index("Isolate")
        self.pcp_lists = k.pcp_lists
        #: (order, migratetype) -> pindex: order_to_pindex().
        self.pindex = {(pl.order, mt): i for i, pl in enumerate(k.pcp_lists)
                       for mt in pl.migratetypes}
        self.pcp_orders = frozenset(pl.order for pl in k.pcp_lists)
        self.pindex_order = [pl.order for pl in k.pcp_lists]
        self.mobility_disabled = False
        self.watermark_boost_factor = 15000
        if self.profile.alloc_harder:
            # 5.10: ALLOC_HARDER|ALLOC_OOM (__zone_watermark_unusable_free L3572).
            self._reserve_flags = ALLOC_NON_BLOCK | ALLOC_OOM
            self._highatomic_list_flags = ALLOC_NON_BLOCK | ALLOC_OOM
        else:
            # 6.1 L4011/L4099, 6.12 L3189/L3277, 7.2 L3570/L3658.
            self._reserve_flags = ALLOC_RESERVES
            self._highatomic_list_flags = ALLOC_HIGHATOMIC | ALLOC_OOM
        # Free lists: circular doubly linked lists over PFNs; each list has a
        # negative sentinel key (list_head).
        self.nxt: Dict[int, int] = {}
        self.prv: Dict[int, int] = {}
        #: Free block head PFN -> (order, migratetype of its list, zone index).
        self.buddy: Dict[int, Tuple[int, int, int]] = {}
        #: Free lists loaded and counted but not yet in buddy, nxt and prv:
        #: sentinel -> (zone index, order, migratetype, PFNs head first), in
        #: load order. At 10 M free pages those dicts cost seconds and
        #: gigabytes a prediction never needs: a list goes in the first time
        #: it is used (_link), all of them before a lookup by PFN (link_all).
        #: (A probe anomaly, a PFN listed twice, stays with the list linked
        #: first, and is counted twice until the second list is linked.)
        self._unlinked: Dict[int, Tuple[int, int, int, Sequence[int]]] = {}
        #: Sentinel of an unlinked list -> whether it lists no PFN twice.
        self._listed_once: Dict[int, bool] = {}
        #: PFN on a pcp list -> (zone index, cpu, pindex).
        self.on_pcp: Dict[int, Tuple[int, int, int]] = {}
        #: page->index of pages on pcp lists (5.10, 6.1 cache the migratetype at free).
        self.pcp_mt: Dict[int, int] = {}
        #: Allocated blocks the model saw being handed out: head PFN -> (order, migratetype).
        self.allocated: Dict[int, Tuple[int, int]] = {}
        self.journal: Optional[List[Tuple[Callable, tuple]]] = None
        self.zones: List[_Zone] = []
        self._zonelists: Dict[int, List[_Zone]] = {}
        for zi, z in enumerate(snapshot.zones):
            self.zones.append(self._new_zone(zi, z))
            self._load_lists(self.zones[zi], z)
            self._load_vmstat(self.zones[zi], z)
        #: watermark_scale_factor, once read (_scale_factor).
        self._wmark_scale: Optional[int] = None
        #: The CPU whose kernel work the model is mirroring: NR_FREE_PAGES
        #: changes go to its vm_stat_diff (set_vm_cpu).
        self.vm_cpu = 0

    # -- loading -------------------------------------------------------------
    def _load_vmstat(self, zs: _Zone, z) -> None:
        """``zone->vm_stat[NR_FREE_PAGES]`` and each CPU's
        ``vm_stat_diff``/``stat_threshold``. Snapshots read before the probe
        kept them: no delta (the exact count is the global one) and
        ``calculate_normal_threshold``'s threshold."""
        nr = self.nr_cpus
        diffs = [0] * nr
        thresholds = [_normal_threshold(zs.managed, nr)] * nr
        for p in z.pcp:
            if p.cpu < nr:
                diffs[p.cpu] = p.fields.get("vm_stat_diff_nr_free_pages", 0)
                thresholds[p.cpu] = p.fields.get("stat_threshold", thresholds[p.cpu])
        zs.vm_diff = diffs
        zs.stat_threshold = thresholds
        zs.vm_global = zs.free_pages - sum(diffs)
        zs.vm_pending = 0

    def _mt_index(self, name: str) -> Optional[int]:
        for i, n in enumerate(self.mt_names):
            if n.lower() == name.lower():
                return i
        return None

    def sentinel(self, zi: int, order: int, mt: int) -> int:
        return -1 - ((zi * self.nr_orders + order) * self.nr_mt + mt)

    def _new_zone(self, zi: int, z) -> _Zone:
        zs = _Zone()
        zs.index, zs.name, zs.node = zi, z.name, z.node
        zs.zone_idx = ZONE_INDEX.get(z.name, zi)
        zs.start_pfn, zs.end_pfn = z.start_pfn, z.end_pfn
        zs.managed = z.managed_pages
        zs.watermarks = dict(z.watermarks)
        zs.boost = z.watermark_boost
        zs.lowmem_reserve = list(z.lowmem_reserve)
        zs.nr_reserved_highatomic = z.nr_reserved_highatomic
        # Counted by _load_lists as the HIGHATOMIC free pages are added
        # (account_freepages): the kernel's counter is exactly those pages.
        zs.nr_free_highatomic = 0
        zs.nr_free = [0] * self.nr_orders
        zs.free_pages = 0
        zs.cma_free = 0
        # zone->flags as the snapshot read them (older snapshots: clear).
        zs.below_high = bool(z.fields.get("ZONE_BELOW_HIGH", 0))
        #: ZONE_RECLAIM_ACTIVE: kswapd's balance_pgdat runs (set_reclaim_active).
        zs.reclaim_active = bool(z.fields.get("ZONE_RECLAIM_ACTIVE", 0))
        zs.boosted = False
        zs.pb_base = z.start_pfn >> self.pageblock_order
        zs.pageblocks = list(z.pageblock_migratetypes or [])
        # has_isolate_pageblock(): the model isolates nothing, so the
        # snapshot's count holds throughout.
        zs.nr_isolate_pageblock = z.fields.get(
            "nr_isolate_pageblock", zs.pageblocks.count(self.MIGRATE_ISOLATE))
        zs.pcp = {}
        zs.vm_pending = 0
        return zs

    def _load_lists(self, zs: _Zone, z) -> None:
        zi = zs.index
        for o in range(self.nr_orders):
            for mt in range(self.nr_mt):
                s = self.sentinel(zi, o, mt)
                self.nxt[s] = s
                self.prv[s] = s
        for o, area in enumerate(z.free_area):
            for mt, pfns in enumerate(area.free_list or []):
                if pfns:
                    self._unlinked[self.sentinel(zi, o, mt)] = (zi, o, mt, pfns)
                    zs.nr_free[o] += len(pfns)
                    self._account(zs, o, mt, len(pfns))
        # A pcp page also on a free list (a probe anomaly) stays on the free
        # list: those lists are linked now. Only the lists of zones that
        # overlap this one can hold its pages.
        on_pcp = {pfn for p in z.pcp for pfns in p.lists or () for pfn in pfns}
        zones = self.zones
        if on_pcp and any(zones[u[0]].start_pfn < zs.end_pfn and zs.start_pfn < zones[u[0]].end_pfn
                          and not on_pcp.isdisjoint(u[3]) for u in self._unlinked.values()):
            self.link_all()
        nr_lists = len(self.pcp_lists)
        for p in z.pcp:
            pcp = _Pcp(p.cpu, p.count, p.high, p.batch, p.fields, nr_lists)
            zs.pcp[p.cpu] = pcp
            for pindex, pfns in enumerate(p.lists or []):
                mts = self.pcp_lists[pindex].migratetypes
                for pfn in pfns:
                    if pfn in self.on_pcp or pfn in self.buddy:
                        continue
                    pcp.lists[pindex].append(pfn)
                    self.on_pcp[pfn] = (zi, p.cpu, pindex)
                    mt = self.pageblock_mt_of(zs, pfn)
                    self.pcp_mt[pfn] = mt if mt in mts or mt >= MIGRATE_PCPTYPES else mts[0]

    def _add_list(self, zi: int, pfns, order: int, mt: int) -> bool:
        """What ``_add(..., tail=True)`` of each of *pfns* in turn does, a
        whole list in a few dict updates (the same dicts, in the same key
        order), for loading. False, having changed nothing, when a PFN is
        already free or listed twice (a probe anomaly): the caller then adds
        them one by one."""
        n = len(pfns)
        if not n:
            return True
        buddy = self.buddy
        if not buddy.keys().isdisjoint(pfns):
            return False
        before = len(buddy)
        # One (order, mt, zone) tuple for the whole list, not one per block.
        buddy.update(dict.fromkeys(pfns, (order, mt, zi)))
        if len(buddy) - before != n:
            for pfn in pfns:
                buddy.pop(pfn, None)
            return False
        s = self.sentinel(zi, order, mt)
        chain = [self.prv[s]]
        chain += pfns
        chain.append(s)
        self.nxt.update(zip(chain, itertools.islice(chain, 1, None)))
        self.prv.update(zip(itertools.islice(chain, 1, None), chain))
        z = self.zones[zi]
        z.nr_free[order] += n
        self._account(z, order, mt, n)
        return True

    def _link(self, s: int) -> None:
        """Put the loaded free list of sentinel *s*, if it is not yet, into
        buddy, nxt and prv. Not journalled: the state stays the same, only
        held another way."""
        u = self._unlinked.pop(s, None)
        if u is None:
            return
        zi, o, mt, pfns = u
        z = self.zones[zi]
        # Counted at load; counted again by what keeps them.
        z.nr_free[o] -= len(pfns)
        self._account(z, o, mt, -len(pfns))
        if self._add_list(zi, pfns, o, mt):
            return
        journal, self.journal = self.journal, None
        try:
            for pfn in pfns:
                if pfn in self.buddy:
                    continue  # a probe anomaly (listed twice): keep the first
                self._add(zi, pfn, o, mt, tail=True)
        finally:
            self.journal = journal

    def link_all(self) -> None:
        """Every loaded free list into buddy, nxt and prv, in load order:
        before a lookup by PFN (and for tests that read those dicts)."""
        for s in list(self._unlinked):
            self._link(s)

    # -- journal -------------------------------------------------------------
    @contextlib.contextmanager
    def trial(self) -> Iterator[List]:
        """Run changes that can be undone: yields the journal; on leaving,
        everything is rolled back unless :meth:`commit` was called inside."""
        if self.journal is not None:
            raise ModelError("nested trial")
        self.journal = j = []
        self._committed = False
        try:
            yield j
        finally:
            self.journal = None
            if not self._committed:
                for fn, args in reversed(j):
                    fn(*args)

    def commit(self) -> None:
        self._committed = True

    def _log(self, fn: Callable, *args: Any) -> None:
        j = self.journal
        if j is not None:
            j.append((fn, args))

    def _set(self, obj: Any, name: str, value: Any) -> None:
        if self.journal is not None:
            self.journal.append((setattr, (obj, name, getattr(obj, name))))
        setattr(obj, name, value)

    # -- free list primitives (list_add / list_add_tail / list_del) -----------
    def _add(self, zi: int, pfn: int, order: int, mt: int, tail: bool = False) -> None:
        """``__add_to_free_list``: *pfn* of *order* onto ``free_list[mt]``."""
        s = self.sentinel(zi, order, mt)
        if self._unlinked:
            self._link(s)
        nxt, prv = self.nxt, self.prv
        if tail:
            p = prv[s]
            nxt[p] = pfn; prv[pfn] = p; nxt[pfn] = s; prv[s] = pfn
        else:
            n = nxt[s]
            nxt[s] = pfn; prv[pfn] = s; nxt[pfn] = n; prv[n] = pfn
        self.buddy[pfn] = (order, mt, zi)
        z = self.zones[zi]
        z.nr_free[order] += 1
        self._account(z, order, mt, 1)
        if self.journal is not None:
            self.journal.append((self._del_raw, (pfn,)))

    def _account(self, z: _Zone, order: int, mt: int, sign: int) -> None:
        """``account_freepages``: NR_FREE_PAGES (not for ISOLATE), CMA and
        highatomic free counts."""
        if mt == self.MIGRATE_ISOLATE:
            return
        z.free_pages += sign << order
        z.vm_pending += sign << order
        if mt == self.MIGRATE_CMA:
            z.cma_free += sign << order
        elif mt == MIGRATE_HIGHATOMIC:
            z.nr_free_highatomic += sign << order

    def _del_raw(self, pfn: int) -> None:
        order, mt, zi = self.buddy.pop(pfn)
        nxt, prv = self.nxt, self.prv
        p, n = prv.pop(pfn), nxt.pop(pfn)
        nxt[p] = n
        prv[n] = p
        z = self.zones[zi]
        z.nr_free[order] -= 1
        self._account(z, order, mt, -1)

    def _del(self, pfn: int) -> Tuple[int, int, int]:
        """``del_page_from_free_list``; returns (order, mt, zone index)."""
        if self._unlinked and pfn not in self.buddy:
            self.link_all()
        info = self.buddy[pfn]
        if self.journal is not None:
            self.journal.append((self._relink, (pfn, self.prv[pfn], info)))
        self._del_raw(pfn)
        return info

    def _relink(self, pfn: int, after: int, info: Tuple[int, int, int]) -> None:
        order, mt, zi = info
        nxt, prv = self.nxt, self.prv
        n = nxt[after]
        nxt[after] = pfn; prv[pfn] = after; nxt[pfn] = n; prv[n] = pfn
        self.buddy[pfn] = info
        z = self.zones[zi]
        z.nr_free[order] += 1
        self._account(z, order, mt, 1)

    def _move_tail(self, pfn: int, mt: int) -> int:
        """``move_to_free_list``: list_move_tail onto ``free_list[mt]``."""
        order, _, zi = self._del(pfn)
        self._vm_account_done(self.zones[zi], take=True)
        self._add(zi, pfn, order, mt, tail=True)
        self._vm_account_done(self.zones[zi], take=True)
        return order

    # -- reading -------------------------------------------------------------
    def set_reclaim_active(self, highest_zoneidx: int, active: bool) -> None:
        """``set_reclaim_active`` / ``clear_reclaim_active`` of kswapd's
        ``balance_pgdat`` (vmscan.c 6.1 L6984 ``update_reclaim_active``):
        ZONE_RECLAIM_ACTIVE on every zone up to *highest_zoneidx*."""
        for z in self.zones:
            if z.zone_idx <= highest_zoneidx and z.managed and z.reclaim_active != active:
                self._set(z, "reclaim_active", active)

    def setup_zone_wmarks(self, zone_idx: int, marks: List[int], reserve: List[int],
                          pageset: Dict[str, int]) -> None:
        """``setup_per_zone_wmarks`` as its kprobe event read it back: the
        zone's watermarks (min, low, high[, promo]) and lowmem reserves, and
        what ``zone_pcp_update`` then gave every CPU's pcp (6.1
        ``pageset_high``; 6.7+ ``pageset_high_min``/``_max``; batch)."""
        for z in self.zones:
            if z.zone_idx != zone_idx:
                continue
            names = ("min", "low", "high", "promo")
            wm = dict(z.watermarks)
            wm.update({n: v for n, v in zip(names, marks)})
            self._set(z, "watermarks", wm)
            if reserve:
                self._set(z, "lowmem_reserve", list(reserve))
            for pcp in z.pcp.values():
                if "pageset_batch" in pageset:
                    self._set(pcp, "batch", pageset["pageset_batch"])
                if "pageset_high_min" in pageset:
                    self._set(pcp, "high_min", pageset["pageset_high_min"])
                    self._set(pcp, "high_max", pageset["pageset_high_max"])
                elif "pageset_high" in pageset:
                    self._set(pcp, "high", pageset["pageset_high"])

    def _lowmem(self) -> List[_Zone]:
        # !ZONE_HIGHMEM (x86-64 has none) and, where the profile says so,
        # !ZONE_MOVABLE.
        capped = self.profile.movable_wmark_capped
        return [z for z in self.zones if z.managed and not (capped and z.name == "Movable")]

    def pages_min(self) -> Optional[int]:
        """``min_free_kbytes`` in pages as the largest lowmem zone's min
        watermark shows it (``pages_min * managed / lowmem_pages``, turned
        back; the zones' managed pages have grown since boot set them);
        None with no lowmem zone."""
        low = self._lowmem()
        if not low:
            return None
        z = max(low, key=lambda z: z.managed)
        return -(-z.watermarks["min"] * sum(x.managed for x in low) // z.managed)

    def _scale_factor(self) -> int:
        """``watermark_scale_factor`` as the zones' low - min shows it
        (default 10 where ``min >> 2`` is the larger term). Read once, from
        the marks the kernel set: a larger min_free_kbytes set by the model
        makes ``min >> 2`` the larger term and hides it."""
        if self._wmark_scale is None:
            self._wmark_scale = self._scale_factor_shown()
        return self._wmark_scale

    def _scale_factor_shown(self) -> int:
        for z in sorted(self._lowmem(), key=lambda z: -z.managed):
            gap = z.watermarks["low"] - z.watermarks["min"]
            if gap > z.watermarks["min"] >> 2:
                for f in (gap * 10000 // z.managed, gap * 10000 // z.managed + 1):
                    if z.managed * f // 10000 == gap:
                        return f
        return 10

    def recommended_min_free_pages(self) -> int:
        """What ``set_recommended_min_free_kbytes`` (mm/khugepaged.c; 5.10
        L2334, 6.1 L2538, 6.12 L2610, 7.2 L3055) raises ``min_free_kbytes``
        to when THP is turned on, in pages: 2 + MIGRATE_PCPTYPES^2
        pageblocks per populated zone up to ZONE_NORMAL, at most 5 % of
        ``nr_free_buffer_pages`` (managed pages above the high watermark,
        boost included, in those zones)."""
        zones = [z for z in self.zones if z.managed and z.zone_idx <= ZONE_INDEX["Normal"]]
        pb = self.pageblock_nr_pages
        recommended = pb * len(zones) * (2 + 3 * 3)
        buffer_pages = sum(max(z.managed - self.wmark(z, ALLOC_WMARK_HIGH), 0) for z in zones)
        return min(recommended, buffer_pages // 20)

    def setup_per_zone_wmarks(self, pages_min: int) -> None:
        """``__setup_per_zone_wmarks`` (5.10 L7960, 6.1 L8719, 6.12 L6116,
        7.2 L6506) for a ``min_free_kbytes`` of *pages_min* pages, then
        ``zone_pcp_update``: every zone's watermarks, boost cleared
        (lowmem reserves stay). ZONE_MOVABLE's min is capped 6.12+
        (``movable_wmark_capped``); 5.10 has no promo mark."""
        low = self._lowmem()
        total = sum(z.managed for z in low)
        if not total:
            return
        scale = self._scale_factor()
        for z in self.zones:
            if not z.managed:
                continue
            tmp = pages_min * z.managed // total
            wmin = tmp if z in low else min(max(z.managed // 1024, 32), 128)
            gap = max(tmp >> 2, z.managed * scale // 10000)
            wm = dict(z.watermarks)
            wm.update(min=wmin, low=wmin + gap, high=wmin + 2 * gap)
            if "promo" in wm:
                wm["promo"] = wmin + 3 * gap
            self._set(z, "watermarks", wm)
            self._set(z, "boost", 0)
            self.zone_pcp_update(z)

    def zone_pcp_update(self, z: _Zone) -> None:
        """``zone_pcp_update`` after new watermarks, without
        ``percpu_pagelist_high_fraction``: ``zone_highsize`` (6.12 L5680)
        is the low watermark split over the node's CPUs, at least batch << 2;
        6.1 sets it as every pcp->high, 6.7+ as high_min (high_max comes from
        the managed pages and does not move). 5.10's pcp->high is 6 * batch."""
        p = self.profile
        if p.pcp_free_batch == "batch" or not z.pcp:
            return
        for pcp in z.pcp.values():
            high = max(z.watermarks["low"] // max(len(z.pcp), 1), pcp.batch << 2)
            # 6.7+'s auto-tuned high moves between high_min and high_max.
            self._set(pcp, "high_min" if p.pcp_high_decays else "high", high)

    def zone_of(self, pfn: int) -> Optional[_Zone]:
        for z in self.zones:
            if z.start_pfn <= pfn < z.end_pfn:
                return z
        return None

    def pageblock_mt_of(self, z: _Zone, pfn: int) -> int:
        """``get_pageblock_migratetype``."""
        i = (pfn >> self.pageblock_order) - z.pb_base
        if 0 <= i < len(z.pageblocks):
            return z.pageblocks[i]
        return MIGRATE_MOVABLE

    def _set_pageblock(self, z: _Zone, pfn: int, mt: int) -> None:
        """``set_pageblock_migratetype``."""
        i = (pfn >> self.pageblock_order) - z.pb_base
        if 0 <= i < len(z.pageblocks) and z.pageblocks[i] != mt:
            if self.journal is not None:
                self.journal.append((z.pageblocks.__setitem__, (i, z.pageblocks[i])))
            z.pageblocks[i] = mt

    def head(self, zi: int, order: int, mt: int) -> Optional[int]:
        s = self.sentinel(zi, order, mt)
        if self._unlinked:
            self._link(s)
        h = self.nxt[s]
        return None if h == s else h

    def free_list(self, zi: int, order: int, mt: int) -> List[int]:
        """``free_area[order].free_list[mt]`` of zone *zi*, head first. A
        list the model has not used since loading is copied as loaded, not
        linked (a view changes nothing, and at 10 M entries linking them
        all cost seconds and gigabytes): linking would keep the same PFNs in
        the same order unless one is listed twice or already on a linked
        list (a probe anomaly), and such a list is linked first. A PFN on
        two lists neither yet linked shows on both, as ``nr_free`` counts
        it twice, until the model links one of them (see _unlinked)."""
        s = self.sentinel(zi, order, mt)
        u = self._unlinked.get(s)
        if u is not None:
            pfns = u[3]
            # In slices: the TUI's event loop gets the GIL between two.
            pieces = list(slices(pfns))
            once = self._listed_once.get(s)
            if once is None:
                seen: set = set()
                for piece in pieces:
                    seen.update(piece)
                once = self._listed_once[s] = len(seen) == len(pfns)
                del seen
            # _add_list's own test: it links them as they are.
            keys = self.buddy.keys()
            if once and all(keys.isdisjoint(piece) for piece in pieces):
                out: List[int] = []
                for piece in pieces:
                    out += piece
                return out
            self._link(s)
        out, p = [], self.nxt[s]
        while p != s:
            out.append(p)
            p = self.nxt[p]
        return out

    def free_list_from_tail(self, zi: int, order: int, mt: int) -> Iterator[int]:
        """``free_area[order].free_list[mt]`` of zone *zi*, tail first
        (``list_for_each_entry_reverse``), lazily."""
        s = self.sentinel(zi, order, mt)
        if self._unlinked:
            self._link(s)
        prv = self.prv
        p = prv[s]
        while p != s:
            yield p
            p = prv[p]

    def containing_free_block(self, pfn: int) -> Optional[int]:
        """Head PFN of the free buddy block holding *pfn*, if any."""
        if self._unlinked:
            self.link_all()
        buddy = self.buddy
        for o in range(self.nr_orders):
            h = pfn & ~((1 << o) - 1)
            info = buddy.get(h)
            if info is not None and info[0] >= o and pfn < h + (1 << info[0]):
                return h
        return None

    def is_free(self, pfn: int) -> bool:
        return self.containing_free_block(pfn) is not None

    def move_freelist_head(self, pfn: int) -> None:
        """``move_freelist_head`` (mm/compaction.c; 6.1 L1319, 7.2 L1479) on
        the list of the free block *pfn*: the blocks before it go, in
        order, to the list's tail, and it is first (compaction's fast
        search: a later search starts past what it has seen)."""
        if self._unlinked:
            self.link_all()
        order, mt, zi = self.buddy[pfn]
        s = self.sentinel(zi, order, mt)
        nxt, prv = self.nxt, self.prv
        first = nxt[s]
        if first == pfn:
            return
        before, last = prv[pfn], prv[s]
        # Cut [first .. before] and splice it after last: circular, O(1).
        nxt[s] = pfn; prv[pfn] = s
        nxt[last] = first; prv[first] = last
        nxt[before] = s; prv[s] = before
        self._log(self.move_freelist_head, first)

    def run_mid_list(self, pfns: Sequence[int], order: int) -> bool:
        """*pfns* (two or more) are free blocks of *order* that follow one
        another on one free list, the first not at its head: what the
        kernel takes next from a list rotated to start there."""
        if self.run_with_gaps(pfns, order, 0) != []:
            return False
        _, mt, zi = self.buddy[pfns[0]]
        return self.nxt[self.sentinel(zi, order, mt)] != pfns[0]

    def run_with_gaps(self, pfns: Sequence[int], order: int, most: int) -> Optional[List[int]]:
        """*pfns* (two or more) are free blocks of *order* on one free list,
        in list order: the blocks between them (at most *most*), else None."""
        if len(pfns) < 2:
            return None
        if self._unlinked:
            self.link_all()
        info = self.buddy.get(pfns[0])
        if info is None or info[0] != order:
            return None
        s = self.sentinel(info[2], order, info[1])
        nxt, skipped, p = self.nxt, [], pfns[0]
        for take in pfns[1:]:
            q = nxt[p]
            while q != take:
                if q == s or len(skipped) == most:
                    return None
                skipped.append(q)
                q = nxt[q]
            p = take
        return skipped

    def buddy_heads(self, start: int, end: int) -> Dict[int, int]:
        """The free blocks whose first page is in [*start*, *end*): head PFN
        -> order. Those are the pages ``PageBuddy`` is true of (a pcp page
        is not one)."""
        if self._unlinked:
            self.link_all()
        buddy = self.buddy
        return {p: buddy[p][0] for p in range(start, end) if p in buddy}

    # -- pcp primitives ------------------------------------------------------
    def _pcp_add(self, zi: int, cpu: int, pindex: int, pfn: int, tail: bool, mt: int) -> None:
        pcp = self.zones[zi].pcp[cpu]
        lst = pcp.lists[pindex]
        if tail:
            lst.append(pfn)
            undo = lst.pop
        else:
            lst.appendleft(pfn)
            undo = lst.popleft
        self.on_pcp[pfn] = (zi, cpu, pindex)
        self.pcp_mt[pfn] = mt
        pcp.count += 1 << self.pindex_order[pindex]
        if self.journal is not None:
            self.journal.append((self._pcp_undo_add, (pcp, undo, pfn, pindex)))

    def _pcp_undo_add(self, pcp: _Pcp, undo: Callable, pfn: int, pindex: int) -> None:
        undo()
        del self.on_pcp[pfn]
        self.pcp_mt.pop(pfn, None)
        pcp.count -= 1 << self.pindex_order[pindex]

    def _pcp_take(self, pfn: int, where: str = "any") -> Tuple[int, int, int]:
        """Take *pfn* off its pcp list (head, tail or anywhere)."""
        zi, cpu, pindex = self.on_pcp.pop(pfn)
        pcp = self.zones[zi].pcp[cpu]
        lst = pcp.lists[pindex]
        mt = self.pcp_mt.pop(pfn, MIGRATE_MOVABLE)
        if lst and lst[0] == pfn:
            lst.popleft()
            undo: Callable = lst.appendleft
            args: tuple = (pfn,)
        elif lst and lst[-1] == pfn:
            lst.pop()
            undo, args = lst.append, (pfn,)
        else:
            i = lst.index(pfn)
            del lst[i]
            undo, args = lst.insert, (i, pfn)
        pcp.count -= 1 << self.pindex_order[pindex]
        if self.journal is not None:
            self.journal.append((self._pcp_undo_take, (pcp, undo, args, pfn, (zi, cpu, pindex), mt)))
        return zi, cpu, pindex

    def _pcp_undo_take(self, pcp, undo, args, pfn, where, mt) -> None:
        undo(*args)
        self.on_pcp[pfn] = where
        self.pcp_mt[pfn] = mt
        pcp.count += 1 << self.pindex_order[where[2]]

    def _mark_allocated(self, pfn: int, order: int, mt: int) -> None:
        old = self.allocated.get(pfn)
        self.allocated[pfn] = (order, mt)
        if self.journal is not None:
            if old is None:
                self.journal.append((self.allocated.pop, (pfn, None)))
            else:
                self.journal.append((self.allocated.__setitem__, (pfn, old)))

    def _unmark_allocated(self, pfn: int) -> None:
        old = self.allocated.pop(pfn, None)
        if old is not None and self.journal is not None:
            self.journal.append((self.allocated.__setitem__, (pfn, old)))

    # == allocation ============================================================
    # The request is resolved by buddyscope.model.request into what
    # __alloc_pages knows after prepare_alloc_pages: order, migratetype,
    # highest_zoneidx, the fast path's alloc_flags and the slowpath's.

    def allocate(self, cpu: int, order: int, migratetype: int, highest_zoneidx: int,
                 alloc_flags: int, slow_flags: Optional[int] = None) -> Outcome:
        """``__alloc_pages``: the fast path (``get_page_from_freelist`` with
        *alloc_flags*), then, if every zone failed, one more attempt with the
        slowpath's flags (``gfp_to_alloc_flags``). Reclaim, compaction and
        OOM are not modelled: if that fails too the outcome is a failure."""
        self._events: List[tuple] = []
        self._path: List[Step] = []
        self._refill: Optional[List[int]] = None
        if cpu != self.vm_cpu:
            self.set_vm_cpu(cpu)
        pfn, zone = self._get_page_from_freelist(cpu, order, migratetype, highest_zoneidx,
                                                 alloc_flags)
        if pfn is None and slow_flags is not None:
            self._path.append(Step("slowpath", {"alloc_flags": hex(slow_flags)}))
            pfn, zone = self._get_page_from_freelist(cpu, order, migratetype,
                                                     highest_zoneidx, slow_flags)
        if pfn is None:
            self._path.append(Step("failed", {"why": "no zone had a free block within its "
                                              "watermark (reclaim and compaction not modelled)"}))
        else:
            self._mark_allocated(pfn, order, migratetype)
        return Outcome(pfn, order, zone.name if zone else None, self._path, self._events,
                       self._refill)

    def zonelist(self, highest_zoneidx: int) -> List[_Zone]:
        """``ZONELIST_FALLBACK`` of node 0 from the preferred zone down
        (``build_zonerefs_node``: descending zone index)."""
        cached = self._zonelists.get(highest_zoneidx)
        if cached is None:
            zs = [z for z in self.zones if z.zone_idx <= highest_zoneidx and z.managed > 0]
            cached = self._zonelists[highest_zoneidx] = sorted(zs, key=lambda z: (z.node, -z.zone_idx))
        return cached

    def _get_page_from_freelist(self, cpu, order, mt, highest_zoneidx, alloc_flags):
        """``get_page_from_freelist``."""
        zones = self.zonelist(highest_zoneidx)
        while True:
            for z in zones:
                ok = False
                if self.profile.below_high_flag and not z.below_high:
                    # 6.12+: a zone above its high watermark is used at once;
                    # one below it gets ZONE_BELOW_HIGH (pcp sizing).
                    if self._zone_watermark_fast(z, order, self.wmark(z, ALLOC_WMARK_HIGH),
                                                 highest_zoneidx, alloc_flags):
                        ok = True
                    else:
                        self._set(z, "below_high", True)
                if not ok:
                    mark = self.wmark(z, alloc_flags & ALLOC_WMARK_MASK)
                    if not (alloc_flags & ALLOC_NO_WATERMARKS) and not self._zone_watermark_fast(
                            z, order, mark, highest_zoneidx, alloc_flags):
                        self._path.append(Step("zone_skip", {"zone": z.name,
                                                             "why": f"below watermark {mark}"}))
                        continue
                pfn = self._rmqueue(z, cpu, order, mt, alloc_flags)
                if pfn is not None:
                    # For pcp pages too (5.10 L3919, 6.1 L4364, 6.12 L3565).
                    if not self.profile.highatomic_reserve_in_rmqueue_buddy \
                            and self._highatomic_request(order, alloc_flags):
                        self._reserve_highatomic_pageblock(z, pfn, order)
                    return pfn, z
                self._path.append(Step("zone_skip", {"zone": z.name, "why": "rmqueue found nothing"}))
            if alloc_flags & ALLOC_NOFRAGMENT:
                # Fragmenting is better than failing (get_page_from_freelist
                # 5.10 L3797, 6.1 L4241, 6.12 L3420).
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return None, None

    # -- watermarks (mm/page_alloc.c __zone_watermark_ok and friends) ---------
    def wmark(self, z: _Zone, i: int) -> int:
        """``wmark_pages``: _watermark[i] + watermark_boost."""
        return z.watermarks[("min", "low", "high")[i]] + z.boost

    def _unusable_free(self, z: _Zone, order: int, alloc_flags: int) -> int:
        """``__zone_watermark_unusable_free``."""
        unusable = (1 << order) - 1
        if not (alloc_flags & self._reserve_flags):
            unusable += z.nr_free_highatomic if self.profile.highatomic_term_free \
                else z.nr_reserved_highatomic
        if not (alloc_flags & ALLOC_CMA):
            unusable += z.cma_free
        return unusable

    def _zone_watermark_ok(self, z: _Zone, order: int, mark: int, highest_zoneidx: int,
                           alloc_flags: int, free_pages: Optional[int] = None) -> bool:
        """``__zone_watermark_ok``; *free_pages* defaults to NR_FREE_PAGES."""
        if free_pages is None:
            free_pages = self.zone_page_state(z)
        free = free_pages - self._unusable_free(z, order, alloc_flags)
        m = mark
        if self.profile.alloc_harder:
            # 5.10 L3609: ALLOC_HIGH halves min; ALLOC_HARDER takes a quarter
            # more with or without it, ALLOC_OOM half instead.
            if alloc_flags & ALLOC_MIN_RESERVE:
                m -= m // 2
            if alloc_flags & ALLOC_OOM:
                m -= m // 2
            elif alloc_flags & ALLOC_NON_BLOCK:
                m -= m // 4
        elif alloc_flags & ALLOC_RESERVES:
            if alloc_flags & ALLOC_MIN_RESERVE:
                m -= m // 2
                if alloc_flags & ALLOC_NON_BLOCK:
                    m -= m // 4
            if alloc_flags & ALLOC_OOM:
                m -= m // 2
        if free <= m + self._lowmem_reserve(z, highest_zoneidx):
            return False
        if order == 0:
            return True
        for o in range(order, self.nr_orders):
            if not z.nr_free[o]:
                continue
            for t in range(MIGRATE_PCPTYPES):
                if self.head(z.index, o, t) is not None:
                    return True
            if self.MIGRATE_CMA is not None and alloc_flags & ALLOC_CMA \
                    and self.head(z.index, o, self.MIGRATE_CMA) is not None:
                return True
            if alloc_flags & self._highatomic_list_flags \
                    and self.head(z.index, o, MIGRATE_HIGHATOMIC) is not None:
                return True
        return False

    def zone_watermark_ok(self, z: _Zone, order: int, mark: int, highest_zoneidx: int,
                          alloc_flags: int, free_pages: Optional[int] = None) -> bool:
        """``zone_watermark_ok``: ``__zone_watermark_ok`` on NR_FREE_PAGES,
        or on *free_pages* (replay's check of a past or exact count)."""
        return self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages)

    def set_vm_cpu(self, cpu: int) -> None:
        """The kernel work that follows runs on *cpu*: what the previous
        one changed goes to its ``vm_stat_diff`` first."""
        for z in self.zones:
            if z.vm_pending:
                self._vm_flush(z)
        self.vm_cpu = cpu

    def _vm_account_done(self, z: _Zone, take: bool = False) -> None:
        """One NR_FREE_PAGES update of the kernel ends here: a block freed,
        or (*take*) a page taken or one side of a move where the profile
        updates per take (else the batch's update comes at the next read or
        event)."""
        p = self.profile
        if z.vm_pending and p.watermark_lagging_free and (p.free_pages_per_take or not take):
            self._vm_flush(z)

    def _vm_flush(self, z: _Zone) -> None:
        """``__mod_zone_page_state(zone, NR_FREE_PAGES, delta)`` on
        ``vm_cpu`` for the NR_FREE_PAGES change not yet applied: past
        ``stat_threshold`` the whole delta folds into ``zone->vm_stat``."""
        cpu = self.vm_cpu
        x = z.vm_pending + z.vm_diff[cpu]
        diff = list(z.vm_diff)
        if abs(x) > z.stat_threshold[cpu]:
            self._set(z, "vm_global", z.vm_global + x)
            diff[cpu] = 0
        else:
            diff[cpu] = x
        self._set(z, "vm_diff", diff)
        self._set(z, "vm_pending", 0)

    def fold_vm_diffs(self, cpu: int, upto_zone: _Zone) -> None:
        """``refresh_cpu_vm_stats`` on *cpu*: its deltas of every zone up
        to *upto_zone* go into ``zone->vm_stat`` (each zone's before its
        ``decay_pcp_high``)."""
        self.set_vm_cpu(cpu)
        for z in self.zones:
            if z.index > upto_zone.index:
                break
            if z.vm_diff[cpu]:
                diff = list(z.vm_diff)
                self._set(z, "vm_global", z.vm_global + diff[cpu])
                diff[cpu] = 0
                self._set(z, "vm_diff", diff)

    def lowmem_reserve_for(self, z: _Zone, highest_zoneidx: int) -> int:
        """``z->lowmem_reserve[highest_zoneidx]``."""
        return self._lowmem_reserve(z, highest_zoneidx)

    def unusable_free(self, z: _Zone, order: int, alloc_flags: int) -> int:
        """``__zone_watermark_unusable_free``."""
        return self._unusable_free(z, order, alloc_flags)

    def correct_zone_page_state(self, z: _Zone, delta: int) -> None:
        """Move the global NR_FREE_PAGES count the watermark checks read
        (``zone->vm_stat``) by *delta*, the free pages staying as they are:
        replay's word for what the kernel's check showed of its count."""
        self._set(z, "vm_global", z.vm_global + delta)

    def zone_page_state(self, z: _Zone) -> int:
        """``zone_page_state(zone, NR_FREE_PAGES)``: the global count
        without the CPUs' unfolded deltas (never below 0); the exact count
        where the profile says the watermark checks read that."""
        if not self.profile.watermark_lagging_free:
            return z.free_pages
        if z.vm_pending:
            self._vm_flush(z)
        return max(0, z.vm_global)

    def _lowmem_reserve(self, z: _Zone, highest_zoneidx: int) -> int:
        lr = z.lowmem_reserve
        return lr[highest_zoneidx] if highest_zoneidx < len(lr) else 0

    def _zone_watermark_fast(self, z: _Zone, order: int, mark: int, highest_zoneidx: int,
                             alloc_flags: int) -> bool:
        """``zone_watermark_fast``: the order-0 shortcut, the full check, then
        for atomic order-0 requests at the min watermark a retry that ignores
        the boost (whatever *mark* was: the high-watermark check too)."""
        if order == 0:
            free = self.zone_page_state(z)
            usable = free - min(free, self._unusable_free(z, 0, alloc_flags))
            if usable > mark + self._lowmem_reserve(z, highest_zoneidx):
                return True
        if self._zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags):
            return True
        # 5.10 L3703, 6.1 L4148 (gfp __GFP_ATOMIC); 6.12 L3327, 7.2 L3708 (ALLOC_MIN_RESERVE).
        gate = ALLOC_GFP_ATOMIC if self.profile.boost_retry_gfp_atomic else ALLOC_MIN_RESERVE
        if (order == 0 and alloc_flags & gate and z.boost
                and alloc_flags & ALLOC_WMARK_MASK == ALLOC_WMARK_MIN):
            return self._zone_watermark_ok(z, 0, z.watermarks["min"], highest_zoneidx,
                                           alloc_flags)
        return False

    # -- rmqueue ---------------------------------------------------------------
    def _rmqueue(self, z: _Zone, cpu: int, order: int, mt: int, alloc_flags: int) -> Optional[int]:
        """``rmqueue``: the pcp for the orders it holds, else the buddy."""
        pindex = self.pindex.get((order, mt))
        if pindex is not None and not (
                # 5.10/6.1: MOVABLE without ALLOC_CMA bypasses the pcp when
                # CMA is built in (rmqueue 5.10 L3439, 6.1 L3893).
                self.profile.cached_pcp_migratetype and self.MIGRATE_CMA is not None
                and mt == MIGRATE_MOVABLE and not alloc_flags & ALLOC_CMA):
            pfn = self._rmqueue_pcplist(z, cpu, order, mt, pindex, alloc_flags)
            if pfn is not None or not self.profile.pcp_null_to_buddy:
                return pfn
        return self._rmqueue_buddy(z, order, mt, alloc_flags)

    def _rmqueue_pcplist(self, z: _Zone, cpu: int, order: int, mt: int, pindex: int,
                         alloc_flags: int) -> Optional[int]:
        """``rmqueue_pcplist`` + ``__rmqueue_pcplist``."""
        pcp = z.pcp.get(cpu)
        if pcp is None:
            raise ModelError(f"no pcp state for cpu {cpu} in zone {z.name}")
        p = self.profile
        if p.pcp_free_batch == "free_factor":
            self._set(pcp, "free_factor", pcp.free_factor >> 1)
        elif p.pcp_free_batch == "free_count":
            self._set(pcp, "free_count", pcp.free_count >> 1)
        lst = pcp.lists[pindex]
        if not lst:
            batch = self._refill_count(z, pcp, order)
            if p.no_refill_highatomic and alloc_flags & ALLOC_HIGHATOMIC:
                return None
            pages = self._rmqueue_bulk(z, order, batch, mt, alloc_flags)
            for pfn in pages:
                # set_pcppage_migratetype(page, mt) of the list taken from (5.10, 6.1).
                self._pcp_add(z.index, cpu, pindex, pfn, True, mt)
            self._refill = list(pages)
            self._path.append(Step("pcp_refill", {"cpu": cpu, "zone": z.name, "pindex": pindex,
                                                  "asked": batch, "pages": list(pages)}))
            if not lst:
                return None
        else:
            self._path.append(Step("pcp_hit", {"cpu": cpu, "zone": z.name, "pindex": pindex}))
        pfn = lst[0]
        self._pcp_take(pfn)
        return pfn

    def pcplist_effects(self, z: _Zone, cpu: int, order: int, refill: bool) -> None:
        """What ``rmqueue_pcplist`` changes on *cpu*'s pcp whichever page it
        then finds: free_factor (6.1 L3855) or free_count (6.12 L3126, 7.2
        L3379) halved, and for an empty list ``nr_pcp_alloc``'s pcp->high
        and alloc_factor (6.12 L3021, 7.2 L3264). For replay after a miss,
        whose own attempt was rolled back."""
        pcp = z.pcp.get(cpu)
        if pcp is None:
            return
        p = self.profile
        if p.pcp_free_batch == "free_factor":
            self._set(pcp, "free_factor", pcp.free_factor >> 1)
        elif p.pcp_free_batch == "free_count":
            self._set(pcp, "free_count", pcp.free_count >> 1)
        if refill:
            self._refill_count(z, pcp, order)

    def _refill_count(self, z: _Zone, pcp: _Pcp, order: int) -> int:
        """How many blocks ``rmqueue_bulk`` is asked for."""
        kind = self.profile.refill
        if kind == "batch":
            return pcp.batch        # 5.10 __rmqueue_pcplist
        if kind == "batch_shift":   # 6.1 __rmqueue_pcplist
            b = pcp.batch
            return max(b >> order, 2) if b > 1 else b
        return self._nr_pcp_alloc(z, pcp, order)

    def _nr_pcp_alloc(self, z: _Zone, pcp: _Pcp, order: int) -> int:
        """``nr_pcp_alloc`` (6.12 L3021, 7.2 L3264)."""
        base = pcp.batch
        high = max(min(pcp.high, pcp.high_max), pcp.high_min)
        self._set(pcp, "high", high)
        if high < base:
            return 1
        batch = base if order else base << pcp.alloc_factor
        if pcp.high_min != pcp.high_max and not z.below_high:
            high = min(high + batch, pcp.high_max)
            self._set(pcp, "high", high)
        if not order:
            max_nr_alloc = max(high - pcp.count - base, base)
            if batch <= max_nr_alloc and pcp.alloc_factor < self.pcp_batch_scale_max:
                self._set(pcp, "alloc_factor", pcp.alloc_factor + 1)
            batch = min(batch, max_nr_alloc)
        if batch > 1:
            batch = max(batch >> order, 2)
        return batch

    #: CONFIG_PCP_BATCH_SCALE_MAX of the Debian 6.1, 6.12 and 7.2 configs.
    pcp_batch_scale_max = 5

    def _rmqueue_bulk(self, z: _Zone, order: int, count: int, mt: int,
                      alloc_flags: int) -> List[int]:
        """``rmqueue_bulk``: ``__rmqueue`` once per block under the zone lock;
        stops at the first failure. 6.12+ keep the ``rmqueue_mode`` across
        the batch."""
        pages = []
        mode = [RMQUEUE_NORMAL]
        for _ in range(count):
            pfn = self._rmqueue_one(z, order, mt, alloc_flags, mode)
            if pfn is None:
                break
            pages.append(pfn)
        return pages

    def _rmqueue_buddy(self, z: _Zone, order: int, mt: int, alloc_flags: int) -> Optional[int]:
        """``rmqueue_buddy`` (6.1+), the buddy half of 5.10's ``rmqueue``."""
        self._path.append(Step("buddy", {"zone": z.name, "order": order,
                                         "migratetype": self.mt_names[mt]}))
        pfn = None
        highatomic = self._highatomic_request(order, alloc_flags)
        if highatomic:
            pfn = self._rmqueue_smallest(z, order, MIGRATE_HIGHATOMIC)
            if pfn is not None and self.profile.zone_locked_in_rmqueue:
                # 5.10 traces it here, with the requested migratetype (L3465).
                self._events.append(("zone_locked", pfn))
        if pfn is None:
            pfn = self._rmqueue_one(z, order, mt, alloc_flags, [RMQUEUE_NORMAL])
            if pfn is None and not self.profile.zone_locked_in_rmqueue \
                    and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
                pfn = self._rmqueue_smallest(z, order, MIGRATE_HIGHATOMIC)
        if pfn is not None and highatomic and self.profile.highatomic_reserve_in_rmqueue_buddy:
            self._reserve_highatomic_pageblock(z, pfn, order)   # 7.2 L3255
        return pfn

    def _highatomic_request(self, order: int, alloc_flags: int) -> bool:
        """A high-order atomic request: HIGHATOMIC first, and a block
        reserved. 5.10: order && ALLOC_HARDER (rmqueue L3462, L3919); 6.1+:
        ALLOC_HIGHATOMIC, which gfp_to_alloc_flags gives only at order > 0."""
        if self.profile.alloc_harder:
            return order > 0 and bool(alloc_flags & ALLOC_NON_BLOCK)
        return bool(alloc_flags & ALLOC_HIGHATOMIC)

    def _reserve_highatomic_pageblock(self, z: _Zone, pfn: int, order: int) -> None:
        """``reserve_highatomic_pageblock`` (5.10 L2637, 6.1 L2908, 6.12
        L2069, 7.2 L3437): retype the allocated page's pageblock HIGHATOMIC
        and move its free pages to HIGHATOMIC's lists, within ~1% of the zone."""
        pb = self.pageblock_nr_pages
        share = z.managed // 100
        if self.profile.highatomic_reserve_aligned:
            if share < pb:
                return
            max_managed = -(-share // pb) * pb   # ALIGN(share, pageblock_nr_pages)
        else:
            max_managed = share + pb
        if z.nr_reserved_highatomic >= max_managed:
            return
        # Only mergeable blocks (5.10: not HIGHATOMIC, ISOLATE or CMA: the same).
        if self.pageblock_mt_of(z, pfn) >= MIGRATE_PCPTYPES:
            return
        if not self.profile.highatomic_reserve_aligned:
            self._set(z, "nr_reserved_highatomic", z.nr_reserved_highatomic + pb)
            self._set_pageblock(z, pfn, MIGRATE_HIGHATOMIC)
            self._move_freepages_block(z, pfn, MIGRATE_HIGHATOMIC)
        elif order < self.pageblock_order:
            start, end = self._block_range(z, pfn)
            if not (z.contains(start) and z.contains(end)):
                return   # move_freepages_block: -1, nothing reserved
            self._count_block(z, start, end, MIGRATE_HIGHATOMIC)
            self._set_pageblock(z, start, MIGRATE_HIGHATOMIC)
            self._set(z, "nr_reserved_highatomic", z.nr_reserved_highatomic + pb)
        else:
            self._change_pageblock_range(z, pfn, order, MIGRATE_HIGHATOMIC)
            self._set(z, "nr_reserved_highatomic", z.nr_reserved_highatomic + (1 << order))
        self._path.append(Step("highatomic", {"pfn": pfn, "reserved": z.nr_reserved_highatomic}))

    def _rmqueue_one(self, z: _Zone, order: int, mt: int, alloc_flags: int,
                     mode: List[int]) -> Optional[int]:
        """``__rmqueue``."""
        cma = self.MIGRATE_CMA
        if cma is not None and alloc_flags & ALLOC_CMA and z.cma_free > z.free_pages // 2:
            # Balance CMA against the rest (5.10 L2857, 6.1 L3128, 6.12 L2319).
            pfn = self._rmqueue_smallest(z, order, cma)
            if pfn is not None:
                return self._traced_rmqueue(pfn, "cma")
        if self.profile.fallback == "steal":
            while True:
                pfn = self._rmqueue_smallest(z, order, mt)
                if pfn is None and cma is not None and alloc_flags & ALLOC_CMA:
                    pfn = self._rmqueue_smallest(z, order, cma)
                if pfn is None and self._rmqueue_fallback(z, order, mt, alloc_flags):
                    continue
                break
            return self._traced_rmqueue(pfn)
        # Debian 6.12 / 7.2: the switch on *mode falls through.
        m = mode[0]
        if m == RMQUEUE_NORMAL:
            pfn = self._rmqueue_smallest(z, order, mt)
            if pfn is not None:
                return pfn
        if m <= RMQUEUE_CMA:
            if cma is not None and alloc_flags & ALLOC_CMA:
                pfn = self._rmqueue_smallest(z, order, cma)
                if pfn is not None:
                    mode[0] = RMQUEUE_CMA
                    return pfn
        if m <= RMQUEUE_CLAIM:
            pfn = self._rmqueue_claim(z, order, mt, alloc_flags)
            if pfn is not None:
                mode[0] = RMQUEUE_NORMAL
                return pfn
        if not alloc_flags & ALLOC_NOFRAGMENT:
            pfn = self._rmqueue_steal(z, order, mt)
            if pfn is not None:
                mode[0] = RMQUEUE_STEAL
                return pfn
        return None

    def _traced_rmqueue(self, pfn: Optional[int], how: str = "") -> Optional[int]:
        # 5.10 traces mm_page_alloc_zone_locked at __rmqueue's exit.
        if pfn is not None and self.profile.zone_locked_in_rmqueue:
            self._events.append(("zone_locked", pfn))
        return pfn

    def _rmqueue_smallest(self, z: _Zone, order: int, mt: int) -> Optional[int]:
        """``__rmqueue_smallest``: the head of the first non-empty
        ``free_list[mt]`` from *order* up, split down by ``expand``."""
        zi = z.index
        nxt = self.nxt
        for o in range(order, self.nr_orders):
            s = self.sentinel(zi, o, mt)
            if self._unlinked:
                self._link(s)
            pfn = nxt[s]
            if pfn == s:
                continue
            self._del(pfn)
            self._expand(z, pfn, order, o, mt)
            self._vm_account_done(z, take=True)
            if not self.profile.zone_locked_in_rmqueue:
                self._events.append(("zone_locked", pfn))
            return pfn
        return None

    def _expand(self, z: _Zone, pfn: int, low: int, high: int, mt: int) -> None:
        """``expand``: the caller keeps the lowest part; each upper half goes
        to the head of ``free_list[mt]`` of its order (5.10 L2182, 6.1 L2394,
        6.12 L1461, 7.2 L1722)."""
        if high == low:
            return
        pieces = []
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add(z.index, pfn + size, high, mt)
            pieces.append((pfn + size, high))
        if self._path is not None:
            self._path.append(Step("split", {"pfn": pfn, "from_order": high + len(pieces),
                                             "to_order": low, "migratetype": self.mt_names[mt],
                                             "pieces": pieces}))

    # -- fallback ----------------------------------------------------------------
    def can_steal_fallback(self, order: int, start_mt: int) -> bool:
        """``can_steal_fallback`` / ``should_try_claim_block``."""
        pbo = self.pageblock_order
        return (order >= pbo or order >= pbo // 2 or start_mt in (MIGRATE_RECLAIMABLE,
                MIGRATE_UNMOVABLE) or self.mobility_disabled)

    def find_suitable_fallback(self, z: _Zone, order: int, start_mt: int) -> Tuple[int, bool]:
        """``find_suitable_fallback`` with only_stealable false: the first
        fallback type with a free block at *order*, and whether the whole
        block may be taken."""
        if not z.nr_free[order]:
            return -1, False
        for fmt in FALLBACKS.get(start_mt, ()):
            if self.head(z.index, order, fmt) is not None:
                return fmt, self.can_steal_fallback(order, start_mt)
        return -1, False

    def _rmqueue_fallback(self, z: _Zone, order: int, start_mt: int, alloc_flags: int) -> bool:
        """5.10/6.1 ``__rmqueue_fallback``: the largest fallback block first,
        unless a MOVABLE request may not steal whole blocks; then
        ``steal_suitable_fallback`` and a retry of ``__rmqueue_smallest``."""
        if start_mt not in FALLBACKS:
            return False
        pbo = self.pageblock_order
        min_order = order
        if alloc_flags & ALLOC_NOFRAGMENT and (self.profile.nofragment_min_order_always
                                               or order < pbo):
            min_order = pbo
        found = None
        for current_order in range(self.nr_orders - 1, min_order - 1, -1):
            fmt, can_steal = self.find_suitable_fallback(z, current_order, start_mt)
            if fmt == -1:
                continue
            if not can_steal and start_mt == MIGRATE_MOVABLE and current_order > order:
                break   # find_smallest
            found = (current_order, fmt, can_steal)
            break
        else:
            return False
        if found is None:
            for current_order in range(order, self.nr_orders):
                fmt, can_steal = self.find_suitable_fallback(z, current_order, start_mt)
                if fmt != -1:
                    found = (current_order, fmt, can_steal)
                    break
            else:
                return False
        current_order, fmt, can_steal = found
        pfn = self.head(z.index, current_order, fmt)
        moved = self._steal_suitable_fallback(z, pfn, current_order, alloc_flags, start_mt,
                                              can_steal)
        claimed = self.pageblock_mt_of(z, pfn) == start_mt
        self._events.append(("extfrag", pfn, current_order, claimed))
        self._path.append(Step("fallback", {
            "pfn": pfn, "fallback_order": current_order, "fallback_migratetype": self.mt_names[fmt],
            "migratetype": self.mt_names[start_mt], "claimed": claimed, "moved": moved}))
        return True

    def _steal_suitable_fallback(self, z: _Zone, pfn: int, current_order: int, alloc_flags: int,
                                 start_mt: int, whole_block: bool,
                                 claim: Optional[bool] = None) -> int:
        """5.10/6.1 ``steal_suitable_fallback``: move the block's free pages
        to *start_mt* (whole_block) and claim the block if enough of it is
        free or alike; else move just this page. *claim* overrides the
        free+alike estimate (replay knows it from ``change_ownership``).
        Returns the pages moved."""
        old = self.pageblock_mt_of(z, pfn)
        if old != MIGRATE_HIGHATOMIC:
            if current_order >= self.pageblock_order:
                self._change_pageblock_range(z, pfn, current_order, start_mt)
            else:
                self._boost_watermark(z, alloc_flags)
                if whole_block:
                    free, movable = self._move_freepages_block(z, pfn, start_mt)
                    if free:
                        if claim is None:
                            claim = self._enough_to_claim(start_mt, old, free, movable)
                        if claim:
                            self._set_pageblock(z, pfn, start_mt)
                        return free
        self._move_tail(pfn, start_mt)
        return 1 << current_order

    def _enough_to_claim(self, start_mt: int, block_mt: int, free: int, movable: int) -> bool:
        """Whether a block is taken over: enough of it is free or holds pages
        alike the request (5.10 L2586, 6.1 L2857, 6.12 L2021, 7.2 L2342)."""
        if start_mt == MIGRATE_MOVABLE:
            alike = movable
        elif block_mt == MIGRATE_MOVABLE:
            alike = self.pageblock_nr_pages - free - movable
        else:
            alike = 0
        return free + alike >= 1 << (self.pageblock_order - 1) or self.mobility_disabled

    def _change_pageblock_range(self, z: _Zone, pfn: int, order: int, mt: int) -> None:
        """``change_pageblock_range``: every pageblock the block covers."""
        nr = max(1, 1 << (order - self.pageblock_order))
        for i in range(nr):
            self._set_pageblock(z, pfn + i * self.pageblock_nr_pages, mt)

    def boost_reclaimed(self, z: _Zone, boost: int) -> None:
        """The end of kswapd's ``balance_pgdat`` (5.10 vmscan.c L3742, 6.1
        L7212, 6.12 L7063, 7.2 L7250): the watermark boost it found at its
        start has been reclaimed for and comes off (what fallbacks added
        since stays)."""
        self._set(z, "boost", z.boost - min(z.boost, boost))

    def _boost_watermark(self, z: _Zone, alloc_flags: int) -> None:
        """``boost_watermark`` (5.10 L2475, 6.1 L2746, 6.12 L1903, 7.2 L2163)."""
        if not self.watermark_boost_factor or 4 * self.pageblock_nr_pages > z.managed:
            return
        max_boost = z.watermarks["high"] * self.watermark_boost_factor // 10000
        if not max_boost:
            return
        max_boost = max(self.pageblock_nr_pages, max_boost)
        self._set(z, "boost", min(z.boost + self.pageblock_nr_pages, max_boost))
        if alloc_flags & ALLOC_KSWAPD:
            self._set(z, "boosted", True)

    def _block_range(self, z: _Zone, pfn: int) -> Optional[Tuple[int, int]]:
        start = pfn & ~(self.pageblock_nr_pages - 1)
        end = start + self.pageblock_nr_pages - 1
        return start, end

    def _count_block(self, z: _Zone, start: int, end: int, moveto: Optional[int]):
        """``move_freepages`` / ``prep_move_freepages_block``: walk the block
        by ascending PFN, moving (when *moveto* is given) every free buddy to
        the tail of ``free_list[moveto]``; count free and movable pages.
        Movable: allocated pages the model saw handed out MOVABLE, and pages
        allocated before the snapshot in a MOVABLE block (PageLRU is not
        visible to the model); never pages on pcp lists."""
        free = movable = 0
        pfn = start
        if self._unlinked:
            self.link_all()
        buddy, allocated, on_pcp = self.buddy, self.allocated, self.on_pcp
        block_mt = self.pageblock_mt_of(z, start)
        while pfn <= end:
            info = buddy.get(pfn)
            if info is not None:
                if moveto is not None:
                    self._move_tail(pfn, moveto)
                free += 1 << info[0]
                pfn += 1 << info[0]
                continue
            a = allocated.get(pfn)
            if a is not None:
                if a[1] == MIGRATE_MOVABLE:
                    movable += 1 << a[0]
                pfn += 1 << a[0]
                continue
            where = on_pcp.get(pfn)
            if where is not None:
                # A pcp entry, head and tail pages alike, is neither
                # PageBuddy nor PageLRU/movable: not counted.
                pfn += 1 << self.pindex_order[where[2]]
                continue
            if block_mt == MIGRATE_MOVABLE:
                movable += 1
            pfn += 1
        return free, movable

    def isolate_free_page_retype(self, z: _Zone, pfn: int, order: int) -> None:
        """The end of ``__isolate_free_page`` (5.10 L3312, 6.12 L2916, 7.2
        L3147) for the pageblock at *pfn* of an isolated block of *order*:
        at least half a pageblock makes a mergeable pageblock MOVABLE; 6.12+
        with ``move_freepages_block``, which moves its other free pages."""
        if order < self.pageblock_order - 1:
            return
        mt = self.pageblock_mt_of(z, pfn)
        if mt >= MIGRATE_PCPTYPES or mt == MIGRATE_MOVABLE:
            return
        if self.profile.isolate_moves_free_pages:
            self._move_freepages_block(z, pfn, MIGRATE_MOVABLE)
        self._set_pageblock(z, pfn, MIGRATE_MOVABLE)

    def _move_freepages_block(self, z: _Zone, pfn: int, mt: int) -> Tuple[int, int]:
        """5.10/6.1 ``move_freepages_block``: clipped to the zone at the
        start; nothing if the block ends outside it."""
        start, end = self._block_range(z, pfn)
        if not z.contains(start):
            start = pfn
        if not z.contains(end):
            return 0, 0
        return self._count_block(z, start, end, mt)

    def _rmqueue_claim(self, z: _Zone, order: int, start_mt: int, alloc_flags: int) -> Optional[int]:
        """Debian 6.12/7.2 ``__rmqueue_claim``: from the largest order down,
        try to claim the head block of the first suitable fallback type."""
        if start_mt not in FALLBACKS:
            return None
        pbo = self.pageblock_order
        min_order = pbo if order < pbo and alloc_flags & ALLOC_NOFRAGMENT else order
        for current_order in range(self.nr_orders - 1, min_order - 1, -1):
            fmt, can_claim = self.find_suitable_fallback(z, current_order, start_mt)
            if fmt == -1:
                continue
            if not can_claim:
                break
            pfn = self.head(z.index, current_order, fmt)
            got = self._try_to_claim_block(z, pfn, current_order, order, start_mt, fmt,
                                           alloc_flags)
            if got is not None:
                self._events.append(("extfrag", got, current_order, True))
                self._path.append(Step("claim", {
                    "pfn": got, "fallback_order": current_order,
                    "fallback_migratetype": self.mt_names[fmt],
                    "migratetype": self.mt_names[start_mt], "claimed": True}))
                return got
        return None

    def _try_to_claim_block(self, z: _Zone, pfn: int, current_order: int, order: int,
                            start_mt: int, block_mt: int, alloc_flags: int,
                            claim: Optional[bool] = None) -> Optional[int]:
        """6.12 ``try_to_steal_block`` / 7.2 ``try_to_claim_block``."""
        # 6.12 try_to_steal_block re-reads the pageblock's own type and leaves
        # a HIGHATOMIC block alone (L1963-1970); 7.2 has no such check.
        if (self.profile.claim_skips_highatomic_block
                and self.pageblock_mt_of(z, pfn) == MIGRATE_HIGHATOMIC):
            return None
        if current_order >= self.pageblock_order:
            self._del(pfn)
            self._change_pageblock_range(z, pfn, current_order, start_mt)
            self._expand(z, pfn, order, current_order, start_mt)
            return pfn
        self._boost_watermark(z, alloc_flags)
        start, end = self._block_range(z, pfn)
        if not (z.contains(start) and z.contains(end)):
            return None
        if claim is None:
            free, movable = self._count_block(z, start, end, None)
            claim = self._enough_to_claim(start_mt, block_mt, free, movable)
        if not claim:
            return None
        self._count_block(z, start, end, start_mt)
        self._set_pageblock(z, start, start_mt)
        return self._rmqueue_smallest(z, order, start_mt)

    def _rmqueue_steal(self, z: _Zone, order: int, start_mt: int) -> Optional[int]:
        """Debian 6.12/7.2 ``__rmqueue_steal``: the smallest fallback block,
        split with its remainders left on the fallback type's lists."""
        if start_mt not in FALLBACKS:
            return None
        for current_order in range(order, self.nr_orders):
            fmt, _ = self.find_suitable_fallback(z, current_order, start_mt)
            if fmt == -1:
                continue
            pfn = self.head(z.index, current_order, fmt)
            self._del(pfn)
            self._expand(z, pfn, order, current_order, fmt)
            self._events.append(("extfrag", pfn, current_order, False))
            self._path.append(Step("steal", {
                "pfn": pfn, "fallback_order": current_order,
                "fallback_migratetype": self.mt_names[fmt],
                "migratetype": self.mt_names[start_mt]}))
            return pfn
        return None

    # == freeing ===============================================================
    def pcp_free_target(self, z: _Zone, pfn: int, order: int) -> Optional[Tuple[int, int]]:
        """Where a free of *pfn* goes: (pindex, migratetype cached) for a pcp
        list, or None for the buddy (a non-pcp order, or an ISOLATE block).
        HIGHATOMIC and CMA blocks use the MOVABLE list (5.10
        ``free_unref_page_commit`` L3169, 6.12 ``free_unref_page``)."""
        mt = self.pageblock_mt_of(z, pfn)
        if mt == self.MIGRATE_ISOLATE:
            return None
        pcpmt = MIGRATE_MOVABLE if mt >= MIGRATE_PCPTYPES else mt
        pindex = self.pindex.get((order, pcpmt))
        if pindex is None:
            return None
        return pindex, mt

    def free(self, cpu: int, pfn: int, order: int, apply_drain: bool = True
             ) -> List[Tuple[int, int, int]]:
        """Free the block *pfn* of *order* as ``free_unref_page`` (pcp
        orders) or ``__free_pages_ok`` (the rest) would. Returns the drain
        the pcp commit triggers, as (pfn, order, migratetype) in
        ``free_pcppages_bulk`` order; it is applied only with *apply_drain*
        (replay applies the kernel's own ``mm_page_pcpu_drain`` events)."""
        z = self.zone_of(pfn)
        if z is None:
            raise ModelError(f"pfn {pfn:#x} is in no zone of the snapshot")
        self._unmark_allocated(pfn)
        if cpu != self.vm_cpu:
            self.set_vm_cpu(cpu)
        target = self.pcp_free_target(z, pfn, order)
        if target is None or cpu not in z.pcp:
            self.free_one_page(z, pfn, order, self.pageblock_mt_of(z, pfn))
            return []
        pindex, mt = target
        self._pcp_add(z.index, cpu, pindex, pfn, False, mt)
        drain = self._pcp_commit_drain(z, z.pcp[cpu], order, pindex)
        if apply_drain and drain:
            for dpfn, dorder, dmt in drain:
                self._pcp_take(dpfn)
                self.free_one_page(z, dpfn, dorder, dmt)
            self.below_high_check(z)
        return drain

    def _pcp_commit_drain(self, z: _Zone, pcp: _Pcp, order: int, pindex: int
                          ) -> List[Tuple[int, int, int]]:
        """The tail of ``free_unref_page_commit``: whether the pcp is over its
        high mark, and which pages ``free_pcppages_bulk`` would send back."""
        p = self.profile
        if p.pcp_free_batch == "batch":
            if pcp.count >= pcp.high:
                return self._bulk_selection(z, pcp, pcp.batch, None)
            return []
        if p.pcp_free_batch == "free_factor":
            free_high = bool(pcp.free_factor and order and order <= 3)
            high = 0 if (not pcp.high or free_high) else pcp.high
            if high and z.reclaim_active and self.profile.pcp_high_reclaim_active:
                # 6.1 nr_pcp_high (L3451): while kswapd reclaims, at most
                # batch << 2 pages stay on the pcp.
                high = min(pcp.batch << 2, high)
            if pcp.count < high:
                return []
            n = pcp.count if free_high else self.nr_pcp_free_factor(pcp, high)
            return self._bulk_selection(z, pcp, n, pindex)
        # 6.12 free_unref_page_commit (L2676) / 7.2 free_frozen_page_commit (L2832)
        self._set(pcp, "alloc_factor", pcp.alloc_factor >> 1)
        batch = pcp.batch
        free_high = False
        if order and order <= 3:
            threshold = batch + pcp.high_min // 2 if p.free_high_adds_half_high_min else batch
            free_high = (pcp.free_count >= threshold and bool(pcp.flags & PCPF_PREV_FREE_HIGH_ORDER)
                         and (not pcp.flags & PCPF_FREE_HIGH_BATCH or pcp.count >= batch))
            self._set(pcp, "flags", pcp.flags | PCPF_PREV_FREE_HIGH_ORDER)
        elif pcp.flags & PCPF_PREV_FREE_HIGH_ORDER:
            self._set(pcp, "flags", pcp.flags & ~PCPF_PREV_FREE_HIGH_ORDER)
        if pcp.free_count < batch << self.pcp_batch_scale_max:
            self._set(pcp, "free_count", pcp.free_count + (1 << order))
        high = self._nr_pcp_high(z, pcp, batch, free_high)
        if pcp.count < high:
            return []
        if free_high:
            n = min(pcp.count, batch << self.pcp_batch_scale_max)
        elif high < batch:
            n = 1
        else:
            n = max(batch, min(pcp.free_count, high - batch))
        drain = self._bulk_selection(z, pcp, n, pindex,
                                     chunk=batch if p.drain_in_batch_chunks else None)
        return drain

    def below_high_check(self, z: _Zone) -> None:
        """The end of a free's commit that drained (6.12 L2718, 7.2 L2915):
        ``zone_watermark_ok(zone, 0, high_wmark_pages, ZONE_MOVABLE, 0)``
        on NR_FREE_PAGES as the drain left it clears ZONE_BELOW_HIGH. Other
        CPUs allocate while the drain runs, and may set it again before."""
        if z.below_high and self._zone_watermark_ok(z, 0, self.wmark(z, ALLOC_WMARK_HIGH),
                                                    ZONE_INDEX["Movable"], 0):
            self._set(z, "below_high", False)

    def free_high_now(self, z: _Zone, pcp: _Pcp) -> int:
        """The mark a free's commit holds pcp->count against, in the pcp's
        state now (5.10 pcp->high; 6.1 ``nr_pcp_high``; 6.7+ ``nr_pcp_high``,
        which moves pcp->high: call it in a trial)."""
        p = self.profile
        if p.pcp_free_batch == "batch":
            return pcp.high
        if p.pcp_free_batch == "free_factor":
            if pcp.high and z.reclaim_active and p.pcp_high_reclaim_active:
                return min(pcp.batch << 2, pcp.high)
            return pcp.high
        return self._nr_pcp_high(z, pcp, pcp.batch, False)

    def nr_pcp_free_factor(self, pcp: _Pcp, high: int) -> int:
        """6.1 ``nr_pcp_free`` (L3422) but for free_high: how many pages a
        drain at *high* sends back, batch << free_factor within [batch,
        high - batch], and free_factor grows while that is below the top."""
        batch = pcp.batch
        if high < batch:
            return 1
        lo, hi = batch, high - batch
        b = batch << pcp.free_factor
        if b < hi and pcp.free_factor < self.pcp_batch_scale_max:
            self._set(pcp, "free_factor", pcp.free_factor + 1)
        return max(lo, min(b, hi))

    # -- vmstat: pcp->high decay and drains with no free (6.12+) ----------------
    def _decay_high(self, pcp: _Pcp) -> None:
        """The first half of ``decay_pcp_high`` (6.12 L2412, 7.2 L2564):
        pcp->high loses an eighth, but not below count - batch <<
        PCP_BATCH_SCALE_MAX nor high_min."""
        if pcp.high > pcp.high_min:
            self._set(pcp, "high", max(pcp.count - (pcp.batch << self.pcp_batch_scale_max),
                                       pcp.high - (pcp.high >> 3), pcp.high_min))

    def decay_pcp_high(self, z: _Zone, pcp: _Pcp) -> List[Tuple[int, int, int]]:
        """``decay_pcp_high``, run for each zone of a CPU by vmstat's
        ``refresh_cpu_vm_stats`` (6.12 vmstat.c L839) about once a second,
        with no event unless it drains: lower pcp->high, then send what is
        above it back in batch-sized ``free_pcppages_bulk`` calls, each from
        pindex 0. Returns the drain (not applied), as :meth:`free` does."""
        self._decay_high(pcp)
        to_drain = pcp.count - pcp.high
        if to_drain <= 0:
            return []
        return self._bulk_selection(z, pcp, to_drain, 0, chunk=pcp.batch)

    def untraced_decays(self, z: _Zone, pcp: _Pcp, until_count: int) -> int:
        """Apply the high half of ``decay_pcp_high`` until pcp->high is at
        most *until_count* (or stops moving): the vmstat decays that ran
        with nothing to drain, so no event shows them. Returns how many."""
        n = 0
        while pcp.high > until_count:
            before = pcp.high
            self._decay_high(pcp)
            if pcp.high == before:
                break
            n += 1
        return n

    def set_pcp_high_drained_at(self, pcp: _Pcp, count: int) -> None:
        """pcp->high when the kernel drained a pcp free at *count* and the
        free before, one block fewer, did not: *count*, which
        ``nr_pcp_high`` then raised to hold free_count + batch (6.12 L2666,
        7.2 L2815)."""
        high = max(count, pcp.high_min)
        need = pcp.free_count + pcp.batch
        if high < need:
            high = max(min(need, pcp.high_max), pcp.high_min)
        self._set(pcp, "high", high)

    def vmstat_drain(self, z: _Zone, pcp: _Pcp) -> List[Tuple[int, int, int]]:
        """The drain a vmstat refresh makes of its own CPU's *pcp*, known to
        have drained: ``decay_pcp_high`` after as many silent decays as it
        takes for the count to exceed pcp->high (each second's decay that
        found count <= high left no event)."""
        while True:
            before = pcp.high
            drain = self.decay_pcp_high(z, pcp)
            if drain or pcp.high == before:
                return drain

    def drain_pages_zone(self, z: _Zone, pcp: _Pcp) -> List[Tuple[int, int, int]]:
        """``drain_pages_zone`` (6.12 L2470, 7.2 L2620; drain_all_pages,
        called for other CPUs' pcps from the caller's CPU since 6.0): all of
        the pcp, in ``free_pcppages_bulk`` calls of batch <<
        PCP_BATCH_SCALE_MAX from pindex 0. Not applied."""
        return self._bulk_selection(z, pcp, pcp.count, 0,
                                    chunk=pcp.batch << self.pcp_batch_scale_max)

    def _nr_pcp_high(self, z: _Zone, pcp: _Pcp, batch: int, free_high: bool) -> int:
        """6.12/7.2 ``nr_pcp_high``: also moves pcp->high."""
        high = max(min(pcp.high, pcp.high_max), pcp.high_min)
        self._set(pcp, "high", high)
        if not high:
            return 0
        if free_high:
            self._set(pcp, "high", max(high - (batch << self.pcp_batch_scale_max), pcp.high_min))
            return 0
        if z.reclaim_active and self.profile.pcp_high_reclaim_active:
            # While kswapd reclaims (6.12 L2650, 7.2 nr_pcp_high): high
            # shrinks by the freed run, and at most batch << 2 pages stay.
            fc = max(pcp.free_count, batch)
            self._set(pcp, "high", max(high - fc, pcp.high_min))
            return min(batch << 2, pcp.high)
        if pcp.high_min == pcp.high_max:
            return high
        if z.below_high:
            fc = max(pcp.free_count, batch)
            self._set(pcp, "high", max(high - fc, pcp.high_min))
            return max(pcp.count, pcp.high_min)
        if pcp.count >= high:
            need = pcp.free_count + batch
            if pcp.high < need:
                self._set(pcp, "high", max(min(need, pcp.high_max), pcp.high_min))
        return high

    def _bulk_selection(self, z: _Zone, pcp: _Pcp, count: int, pindex: Optional[int],
                        chunk: Optional[int] = None) -> List[Tuple[int, int, int]]:
        """Which pages ``free_pcppages_bulk`` takes, from list tails, without
        taking them: 5.10's round robin with ``batch_free`` from MOVABLE;
        6.1+'s whole lists from *pindex* on (7.2: chunks of *chunk*, each
        starting again at *pindex*)."""
        count = min(pcp.count, count)
        taken: Dict[int, int] = {}   # pindex -> pages taken from its tail
        out: List[Tuple[int, int, int]] = []

        def tail(i: int) -> Optional[int]:
            lst = pcp.lists[i]
            k = taken.get(i, 0)
            return lst[-1 - k] if k < len(lst) else None

        # 5.10/6.1 read the type cached at free time, or the pageblock's when
        # the zone has an isolated block (free_pcppages_bulk 5.10 L1417, 6.1 L1634).
        cached = self.profile.cached_pcp_migratetype and not z.nr_isolate_pageblock

        def take(i: int) -> None:
            pfn = tail(i)
            taken[i] = taken.get(i, 0) + 1
            mt = self.pcp_mt.get(pfn, MIGRATE_MOVABLE) if cached else self.pageblock_mt_of(z, pfn)
            out.append((pfn, self.pindex_order[i], mt))

        if pindex is None:   # 5.10 free_pcppages_bulk (L1344)
            mt, batch_free = 0, 0
            while count:
                while True:
                    batch_free += 1
                    mt = (mt + 1) % MIGRATE_PCPTYPES
                    if tail(mt) is not None:
                        break
                if batch_free == MIGRATE_PCPTYPES:
                    batch_free = count
                while True:
                    take(mt)
                    count -= 1
                    batch_free -= 1
                    if not count or not batch_free or tail(mt) is None:
                        break
            return out
        nr = len(pcp.lists)
        todo = [count] if chunk is None else []
        if chunk is not None:
            left = count
            while left > 0:
                todo.append(min(left, chunk))
                left -= chunk
        for c in todo:
            i = pindex - 1
            lo, hi = 0, nr - 1
            while c > 0:
                while True:
                    i += 1
                    if i > hi:
                        i = lo
                    if tail(i) is not None:
                        break
                    if i == hi:
                        hi -= 1
                    if i == lo:
                        lo += 1
                    if lo > hi:
                        return out
                n = 1 << self.pindex_order[i]
                while True:
                    take(i)
                    c -= n
                    if c <= 0 or tail(i) is None:
                        break
        return out

    def free_one_page(self, z: _Zone, pfn: int, order: int, mt: int, to_tail: bool = False) -> None:
        """``free_one_page``: 6.12+ split frees above pageblock_order into
        pageblocks first (``split_large_buddy``)."""
        pbo = self.pageblock_order
        if self.profile.split_large_free and order > pbo:
            for p in range(pfn, pfn + (1 << order), 1 << pbo):
                self.__free_one_page(z, p, pbo, self.pageblock_mt_of(z, p), to_tail)
            return
        self.__free_one_page(z, pfn, order, mt, to_tail)

    def __free_one_page(self, z: _Zone, pfn: int, order: int, mt: int, to_tail: bool) -> None:
        """``__free_one_page``: merge with free buddies, then head or tail."""
        if self._unlinked:
            self.link_all()
        buddy, pbo = self.buddy, self.pageblock_order
        max_order = self.nr_orders - 1
        merge = self.profile.merge
        iso = self.MIGRATE_ISOLATE
        while order < max_order:
            buddy_pfn = pfn ^ (1 << order)
            info = buddy.get(buddy_pfn)
            if info is None or info[0] != order or info[2] != z.index:
                break
            if order >= pbo:
                buddy_mt = self.pageblock_mt_of(z, buddy_pfn)
                if merge == "isolate":
                    # 5.10: refused only against ISOLATE (has_isolate_pageblock).
                    if mt != buddy_mt and iso in (mt, buddy_mt):
                        break
                elif mt != buddy_mt:
                    if mt >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES:
                        break
                    if merge == "retype":
                        self._change_pageblock_range(z, buddy_pfn, order, mt)
            self._del(buddy_pfn)
            pfn &= buddy_pfn
            order += 1
        if not to_tail:
            to_tail = self.buddy_merge_likely(z, pfn, order)
        self._add(z.index, pfn, order, mt, tail=to_tail)
        self._vm_account_done(z)

    def buddy_merge_likely(self, z: _Zone, pfn: int, order: int) -> bool:
        """``buddy_merge_likely``: the block goes to the tail when its
        order+1 buddy is free, so that it can merge soon (false from
        ``MAX_ORDER - 2`` / ``MAX_PAGE_ORDER - 1`` up)."""
        if order >= self.nr_orders - 2:
            return False
        higher = pfn & ~(1 << order)
        if self._unlinked:
            self.link_all()
        info = self.buddy.get(higher ^ (1 << (order + 1)))
        return info is not None and info[0] == order + 1 and info[2] == z.index

    # == applying what the kernel did ===========================================
    # Replay makes the model agree with the kernel's events through these
    # methods alone: each applies one observed outcome as the kernel function
    # it names did it. None of them predicts; each returns what its caller
    # needs to tell that an event contradicted the model.

    def pcp_take(self, pfn: int) -> Tuple[int, int, int]:
        """Take the page *pfn* off the pcp list the model holds it on,
        wherever it stands in the list: the ``list_del`` of
        ``__rmqueue_pcplist`` (an allocation, or a page taken untraced) or of
        ``free_pcppages_bulk`` (a drain).

        :returns: (zone index, cpu, pindex) of the list it was on.
        :raises KeyError: *pfn* is on no pcp list of the model.
        """
        return self._pcp_take(pfn)

    def take_pcp_heads(self, z: _Zone, cpu: int, pindex: int, nr_pages: int, mt: int,
                       refill: Callable[[], bool]) -> int:
        """The pcp half of ``alloc_pages_bulk`` (6.12 L4774, 7.2 L5260): up
        to *nr_pages* pages, each the head of the ``struct per_cpu_pages``
        list *pindex* of *cpu* in zone *z* (``__rmqueue_pcplist``), handed
        out as migratetype *mt*. When the list is empty *refill* is called
        once to put the call's ``rmqueue_bulk`` blocks on it; it returns
        False when it had none left.

        :returns: how many pages were taken (fewer than *nr_pages* when the
            list ran empty with no refill left).
        """
        lst = z.pcp[cpu].lists[pindex]
        for taken in range(nr_pages):
            if not lst:
                refill()
            if not lst:
                return taken
            pfn = lst[0]
            self._pcp_take(pfn)
            self._mark_allocated(pfn, 0, mt)
        return nr_pages

    def pcp_refill(self, zi: int, cpu: int, pindex: int, pfns: Iterable[int], mt: int) -> None:
        """``rmqueue_bulk``'s ``list_add_tail``: each block of *pfns*, already
        off the buddy lists, goes to the tail of pcp list *pindex* of *cpu*
        in zone *zi*, in order, with *mt* as its cached migratetype (5.10/6.1
        ``set_pcppage_migratetype``). *pfns* is read one block at a time,
        after the previous one is on the list."""
        for pfn in pfns:
            self._pcp_add(zi, cpu, pindex, pfn, True, mt)

    def pcp_refill_count(self, z: _Zone, pcp: _Pcp, order: int) -> int:
        """How many blocks ``__rmqueue_pcplist`` asks ``rmqueue_bulk`` for:
        pcp->batch (5.10), ``max(batch >> order, 2)`` (6.1) or
        ``nr_pcp_alloc`` (6.12 L3021, 7.2 L3264), which also raises
        pcp->high and alloc_factor as any refill does."""
        return self._refill_count(z, pcp, order)

    def bulk_zone(self, highest_zoneidx: int, nr_pages: int, alloc_flags: int
                  ) -> Optional[_Zone]:
        """The zone ``alloc_pages_bulk`` takes its pages from: the first of
        the zonelist whose ``zone_watermark_fast`` meets the low watermark
        plus the *nr_pages* asked."""
        return next((z for z in self.zonelist(highest_zoneidx)
                     if self._zone_watermark_fast(z, 0, self.wmark(z, ALLOC_WMARK_LOW) + nr_pages,
                                                  highest_zoneidx, alloc_flags)), None)

    def take_block(self, pfn: int, order: int) -> Optional[int]:
        """Take the block *pfn* of *order* off the free lists, as
        ``__rmqueue_smallest``'s ``del_page_from_free_list`` and ``expand``
        do (6.12+ ``page_del_and_expand``), but with *pfn* anywhere inside
        the free block that holds it: each half not taken goes to the head
        of the block's list.

        :returns: the order of the free block it came from (below *order*
            when the model held less: then every free block of the range is
            taken), or None when no free block holds *pfn* (nothing changed).
        """
        h = self.containing_free_block(pfn)
        if h is None:
            return None
        held, mt, zi = self._del(h)
        if held < order:
            for p in range(pfn, pfn + (1 << order), 1 << held):
                if p != h and self.buddy.get(p):
                    self._del(p)
            self._vm_account_done(self.zones[zi], take=True)
            return held
        ho = held
        while ho > order:
            ho -= 1
            half = 1 << ho
            if pfn >= h + half:
                self._add(zi, h, ho, mt)
                h += half
            else:
                self._add(zi, h + half, ho, mt)
        self._vm_account_done(self.zones[zi], take=True)
        return held

    def steal_fallback(self, pfn: int, fallback_order: int, start_mt: int, claimed: bool
                       ) -> bool:
        """5.10/6.1 ``steal_suitable_fallback`` of the free block *pfn* of
        *fallback_order* for a *start_mt* allocation, where the kernel's
        ``mm_page_alloc_extfrag`` says whether the pageblock changed owner
        (*claimed*, its ``change_ownership``): the block's free pages move to
        *start_mt* (all of the pageblock's when ``can_steal_fallback``
        allows), and a claimed pageblock takes *start_mt*.

        :returns: False when the model has no free block *pfn* of
            *fallback_order* (nothing changed).
        """
        z = self.zone_of(pfn)
        if self._unlinked:
            self.link_all()
        info = self.buddy.get(pfn)
        if z is None or info is None or info[0] != fallback_order:
            return False
        self._steal_suitable_fallback(z, pfn, fallback_order, 0, start_mt,
                                      self.can_steal_fallback(fallback_order, start_mt),
                                      claim=claimed)
        if claimed:
            self._set_pageblock(z, pfn, start_mt)
        return True

    def claim_block(self, pfn: int, start_mt: int) -> None:
        """A claim below pageblock_order the kernel's events show (6.12
        ``try_to_steal_block``, 7.2 ``try_to_claim_block``): every free
        block of *pfn*'s pageblock moves to the tail of
        ``free_list[start_mt]`` (``move_freepages_block``) and the pageblock
        takes *start_mt*. Nothing for a PFN in no zone."""
        z = self.zone_of(pfn)
        if z is None:
            return
        start, end = self._block_range(z, pfn)
        self._count_block(z, start, end, start_mt)
        self._set_pageblock(z, start, start_mt)

    def claim_whole_block(self, pfn: int, fallback_order: int, order: int, start_mt: int
                          ) -> bool:
        """A claim at or above pageblock_order (6.12 ``try_to_steal_block``,
        7.2 ``try_to_claim_block``): the free block *pfn* of *fallback_order*
        leaves its list, every pageblock it covers takes *start_mt*
        (``change_pageblock_range``), and ``expand`` keeps *order* of it.

        :returns: False when *pfn* is not a free block in the model (nothing
            changed).
        """
        z = self.zone_of(pfn)
        if self._unlinked:
            self.link_all()
        if z is None or self.buddy.get(pfn) is None:
            return False
        self._del(pfn)
        self._change_pageblock_range(z, pfn, fallback_order, start_mt)
        self._expand(z, pfn, order, fallback_order, start_mt)
        return True

    def mark_allocated(self, pfn: int, order: int, mt: int) -> None:
        """The block *pfn* of *order* was handed out as *mt* (``prep_new_page``):
        pageblock claims count it MOVABLE or not (``move_freepages``)."""
        self._mark_allocated(pfn, order, mt)

    def pcp_put_back(self, zi: int, cpu: int, pindex: int, pfns: Iterable[int],
                     mts: Iterable[int]) -> None:
        """Put pages taken off the pcp list *pindex* of *cpu* in zone *zi*
        with no event back at its head, *pfns* head first (each of
        migratetype *mts*): replay undoing a recovery the kernel refuted."""
        for pfn, mt in reversed(list(zip(pfns, mts))):
            self._pcp_add(zi, cpu, pindex, pfn, False, mt)

    def forget_allocated(self, pfn: int, order: int) -> None:
        """Every page of the block *pfn* of *order* stops being a block the
        model saw handed out: a free of pages allocated one by one, or as
        part of a larger block, committed together."""
        for p in range(pfn, pfn + (1 << order)):
            self._unmark_allocated(p)

    def free_to_buddy(self, z: _Zone, pfn: int, order: int) -> None:
        """A free that bypasses the pcp: ``free_one_page`` with the
        pageblock's migratetype, as 6.x ``free_unref_page`` /
        ``__free_frozen_pages`` do when ``pcp_spin_trylock`` fails (7.2
        L2977-L2984)."""
        self.forget_allocated(pfn, order)
        self.free_one_page(z, pfn, order, self.pageblock_mt_of(z, pfn))

    def set_pcp_high(self, pcp: _Pcp, high: int) -> None:
        """pcp->high as the kernel's events show it (after a vmstat
        ``decay_pcp_high`` drain)."""
        self._set(pcp, "high", high)

    def set_below_high(self, z: _Zone, below: bool) -> None:
        """ZONE_BELOW_HIGH as a free's drain, or its absence, shows it
        (``free_unref_page_commit`` sets it, ``free_pcppages_bulk``'s caller
        clears it once the zone is above its high watermark)."""
        self._set(z, "below_high", below)

    def set_watermarks(self, z: _Zone, watermarks: dict) -> None:
        """The zone's watermarks as ``setup_per_zone_wmarks`` set them anew
        (``min_free_kbytes`` changed, e.g. when THP is turned on)."""
        self._set(z, "watermarks", watermarks)
