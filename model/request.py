"""
Request
-------

An allocation request as ``__alloc_pages`` sees it after
``prepare_alloc_pages``: order, migratetype (``gfp_migratetype``), highest
zone (``gfp_zone``), the fast path's alloc_flags (``ALLOC_WMARK_LOW`` plus
``alloc_flags_nofragment`` and CMA) and the slowpath's
(``gfp_to_alloc_flags``).

Line references (``L1234``) are to ``mm/page_alloc.c``, unless another file
is named, of Debian's ``linux-source`` packages 5.10.262-1, 6.1.192-3,
6.12.118-1 and 7.2.13-1.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from buddyscope.model import allocator as A
from buddyscope.model.gfp import GfpError, gfp_bits, gfp_migratetype, gfp_zone, parse_gfp

__all__ = ("Request", "RequestError", "make_request")


class RequestError(A.ModelError):
    """A request the kernel would refuse."""


@dataclasses.dataclass(frozen=True)
class Request:
    order: int
    migratetype: int
    cpu: int
    #: The gfp mask, or None when only a migratetype was given (then
    #: GFP_KERNEL-like: direct reclaim, kswapd, highest zone Normal).
    gfp: Optional[int]
    gfp_text: str
    highest_zoneidx: int
    alloc_flags: int
    slow_flags: int


def make_request(alloc: "A.Allocator", order: int, cpu: int = 0, gfp: Optional[str] = None,
                 migratetype: Optional[str | int] = None) -> Request:
    """Resolve a request against the kernel of *alloc*; refuse what the
    kernel would (``__alloc_pages``: order > MAX_PAGE_ORDER warns and
    fails), an unknown gfp flag or migratetype, a CPU that does not exist."""
    profile = alloc.profile
    table = profile.gfp_table
    if not isinstance(order, int) or order < 0 or order >= alloc.nr_orders:
        raise RequestError(
            f"order {order} is out of range: this kernel's orders are 0..{alloc.nr_orders - 1}")
    if not isinstance(cpu, int) or cpu < 0 or cpu >= alloc.nr_cpus:
        raise RequestError(f"cpu {cpu} does not exist: the snapshot has cpus 0..{alloc.nr_cpus - 1}")
    bits = gfp_bits(table)
    mask: Optional[int] = None
    if gfp is not None:
        try:
            mask = parse_gfp(gfp, table)
            zone_name = gfp_zone(mask, table)
        except GfpError as e:
            raise RequestError(str(e)) from None
        mt = gfp_migratetype(mask, table, mobility_disabled=alloc.mobility_disabled)
        if mt >= A.MIGRATE_PCPTYPES:
            raise RequestError(f"gfp {gfp} asks for both __GFP_MOVABLE and __GFP_RECLAIMABLE, "
                               "which the kernel does not allow")
        if migratetype is not None and _mt(alloc, migratetype) != mt:
            raise RequestError(f"gfp {gfp} means migratetype {alloc.mt_names[mt]}, "
                               f"not {migratetype}")
    else:
        if migratetype is None:
            raise RequestError("a request needs a gfp mask or a migratetype")
        mt = _mt(alloc, migratetype)
        if mt >= A.MIGRATE_PCPTYPES:
            raise RequestError(f"migratetype {alloc.mt_names[mt]} is not one a request can ask for "
                               "(only Unmovable, Movable, Reclaimable)")
        # GFP_KERNEL / GFP_HIGHUSER_MOVABLE / GFP_KERNEL|__GFP_RECLAIMABLE
        mask = bits.direct_reclaim | bits.kswapd_reclaim | bits.io | bits.fs
        if mt == A.MIGRATE_MOVABLE:
            mask |= bits.movable | bits.highmem | bits.hardwall
        elif mt == A.MIGRATE_RECLAIMABLE:
            mask |= bits.reclaimable
        zone_name = gfp_zone(mask, table)
    highest = A.ZONE_INDEX.get(zone_name, A.ZONE_INDEX["Normal"])
    zones = alloc.zonelist(highest)
    if not zones:
        raise RequestError(f"no populated zone at or below {zone_name} in the snapshot")
    preferred = zones[0]
    cma = alloc.MIGRATE_CMA is not None and mt == A.MIGRATE_MOVABLE
    # alloc_flags_nofragment (5.10 L3747, 6.1 L4194, 6.12 L3373, 7.2 L3742).
    fast = A.ALLOC_WMARK_LOW
    if mask & bits.kswapd_reclaim:
        fast |= A.ALLOC_KSWAPD
    if preferred.zone_idx == A.ZONE_INDEX["Normal"] and any(
            z.zone_idx == A.ZONE_INDEX["DMA32"] for z in alloc.zones):
        fast |= A.ALLOC_NOFRAGMENT
    if cma:
        fast |= A.ALLOC_CMA
    # gfp_to_alloc_flags (5.10 L4425, 6.1 L4891, 6.12 L4078, 7.2 L4533).
    slow = A.ALLOC_WMARK_MIN | A.ALLOC_CPUSET
    if mask & bits.high:
        slow |= A.ALLOC_MIN_RESERVE
    if mask & bits.kswapd_reclaim:
        slow |= A.ALLOC_KSWAPD
    if bits.atomic:   # 5.10 (and Debian 6.1 keeps __GFP_ATOMIC but uses NON_BLOCK)
        # The slowpath drops __GFP_ATOMIC from a gfp that may also reclaim
        # (__alloc_pages_slowpath 5.10 L4664, 6.1 L5118).
        atomic = bool(mask & bits.atomic) and not mask & bits.direct_reclaim
        if atomic:
            slow |= A.ALLOC_GFP_ATOMIC
        # 5.10: every __GFP_ATOMIC request gets ALLOC_HARDER and loses
        # ALLOC_CPUSET (gfp_to_alloc_flags L4446).
        blocking = not atomic if profile.alloc_harder else bool(mask & bits.direct_reclaim)
    else:
        blocking = bool(mask & bits.direct_reclaim)
    if not blocking:
        if not mask & bits.nomemalloc:
            slow |= A.ALLOC_NON_BLOCK
            if not profile.alloc_harder and order > 0 and slow & A.ALLOC_MIN_RESERVE:
                slow |= A.ALLOC_HIGHATOMIC
        if profile.alloc_harder or slow & A.ALLOC_MIN_RESERVE:
            slow &= ~A.ALLOC_CPUSET
    if cma:
        slow |= A.ALLOC_CMA
    return Request(order, mt, cpu, mask, gfp or alloc.mt_names[mt], highest, fast, slow)


def _mt(alloc: "A.Allocator", name) -> int:
    if isinstance(name, int):
        if 0 <= name < alloc.nr_mt:
            return name
        raise RequestError(f"migratetype {name} does not exist: this kernel has 0..{alloc.nr_mt - 1}")
    want = str(name).upper().removeprefix("MIGRATE_")
    for i, n in enumerate(alloc.mt_names):
        if n.upper() == want:
            return i
    raise RequestError(f"unknown migratetype {name!r}: this kernel has {', '.join(alloc.mt_names)}")
