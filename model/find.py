"""
Find
----

Where one page is in a snapshot: on which buddy free list or pcp list, at
which position, in which free block of which order, in which pageblock of
which type, and the address of its ``struct page``. What ``buddyscope
find`` prints and the TUI's Find shows; pure data over a
:class:`~buddyscope.model.snapshot.Snapshot`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot, Zone

__all__ = ("BUDDY", "IN_USE", "PCP", "FindError", "PageLocation", "find_page", "format_location", "pfn_of")

#: Where a page is: inside a free block on a buddy free list, in a block on a
#: CPU's pcp list, or on no list (allocated, or in flight).
BUDDY = "buddy"
PCP = "pcp"
IN_USE = "in use"


class FindError(BuddyscopeError):
    """A PFN or address the snapshot cannot place."""


@dataclasses.dataclass(frozen=True)
class PageLocation:
    """Where one page is in a snapshot."""

    pfn: int
    #: Address of its ``struct page`` (``vmemmap + pfn``), None when the
    #: snapshot does not record ``vmemmap`` (files from before the field,
    #: procfs).
    struct_page: Optional[int]
    node: int
    zone: str
    #: First PFN of the pageblock holding the page, and its type
    #: (``get_pageblock_migratetype``); the type is None where unknown.
    pageblock_pfn: int
    pageblock_migratetype: Optional[str]
    #: :data:`BUDDY`, :data:`PCP` or :data:`IN_USE`.
    state: str
    #: The free block holding the page: its first PFN and order (BUDDY and PCP).
    block_pfn: Optional[int] = None
    order: Optional[int] = None
    #: The migratetype of the list it is on (a pcp list may hold several:
    #: the THP list of 6.1+ holds Unmovable and Reclaimable).
    migratetype: Optional[str] = None
    #: The pcp list: CPU and ``pindex`` (PCP only).
    cpu: Optional[int] = None
    pindex: Optional[int] = None
    #: Index of the block in its list, 0 = the head, the one taken next;
    #: and how many blocks the list holds.
    position: Optional[int] = None
    list_length: Optional[int] = None

    @property
    def list_name(self) -> Optional[str]:
        """The list in the kernel's words, e.g. ``free_area[3].free_list[Movable]``."""
        if self.state == BUDDY:
            return f"free_area[{self.order}].free_list[{self.migratetype}]"
        if self.state == PCP:
            return f"cpu{self.cpu} pcp lists[{self.pindex}]"
        return None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["list"] = self.list_name
        return d


def pfn_of(snapshot: Snapshot, pfn_or_addr: int) -> int:
    """The PFN *pfn_or_addr* names: a ``struct page`` address (anywhere
    inside one) when it falls in the ``vmemmap`` array of a zone, else a PFN."""
    k = snapshot.kernel
    if pfn_or_addr < 0:
        raise FindError(f"{pfn_or_addr} is not a PFN or an address")
    if k.vmemmap is not None and k.sizeof_page and pfn_or_addr >= k.vmemmap:
        pfn = (pfn_or_addr - k.vmemmap) // k.sizeof_page
        if _zone_of(snapshot, pfn) is not None:
            return pfn
        raise FindError(f"address {pfn_or_addr:#x} is the struct page of PFN {pfn:#x}, "
                        f"which is in no zone of the snapshot ({_spans(snapshot)})")
    if _zone_of(snapshot, pfn_or_addr) is not None:
        return pfn_or_addr
    if pfn_or_addr >= 1 << 47 and k.vmemmap is None:
        raise FindError(f"{pfn_or_addr:#x} looks like an address, and this snapshot does not "
                        "record vmemmap (take a new snapshot with a drgn source)")
    raise FindError(f"PFN {pfn_or_addr:#x} is in no zone of the snapshot ({_spans(snapshot)})")


def _spans(snapshot: Snapshot) -> str:
    return ", ".join(f"{z.node}/{z.name} {z.start_pfn:#x}-{z.end_pfn:#x}" for z in snapshot.zones)


def _zone_of(snapshot: Snapshot, pfn: int) -> Optional[Zone]:
    for z in snapshot.zones:
        if z.start_pfn <= pfn < z.end_pfn:
            return z
    return None


def find_page(snapshot: Snapshot, pfn_or_addr: int) -> PageLocation:
    """Where the page of PFN (or ``struct page`` address) *pfn_or_addr* is.

    A page inside a free block (a buddy of order 3 holds 8 pages) is found
    in that block, whose first PFN is :attr:`PageLocation.block_pfn`.
    """
    if not snapshot.has_pfns:
        raise FindError(f"the snapshot ({snapshot.capture.source}) has no PFNs on its lists: "
                        "find needs a drgn source (--live, --vmcore, --qmp) or a saved snapshot of one")
    pfn = pfn_of(snapshot, pfn_or_addr)
    z = _zone_of(snapshot, pfn)
    assert z is not None
    k = snapshot.kernel
    pbo = k.pageblock_order
    pb_pfn = pfn >> pbo << pbo
    pb_mt = None
    if z.pageblock_migratetypes is not None:
        i = (pfn >> pbo) - (z.start_pfn >> pbo)
        if 0 <= i < len(z.pageblock_migratetypes) and z.pageblock_migratetypes[i] >= 0:
            v = z.pageblock_migratetypes[i]
            pb_mt = k.migratetypes[v] if v < len(k.migratetypes) else str(v)
    struct_page = (k.vmemmap + pfn * k.sizeof_page
                   if k.vmemmap is not None and k.sizeof_page else None)
    base = dict(pfn=pfn, struct_page=struct_page, node=z.node, zone=z.name,
                pageblock_pfn=pb_pfn, pageblock_migratetype=pb_mt)

    for order in range(len(z.free_area)):
        head = pfn >> order << order
        for mt, lst in enumerate(z.free_area[order].free_list or ()):
            if head in lst:
                return PageLocation(**base, state=BUDDY, block_pfn=head, order=order,
                                    migratetype=k.migratetypes[mt], position=lst.index(head),
                                    list_length=len(lst))
    for pcp in z.pcp:
        for pindex, lst in enumerate(pcp.lists or ()):
            order = k.pcp_lists[pindex].order
            head = pfn >> order << order
            if head in lst:
                mts = k.pcp_lists[pindex].migratetypes
                return PageLocation(**base, state=PCP, block_pfn=head, order=order,
                                    migratetype="/".join(k.migratetypes[m] for m in mts),
                                    cpu=pcp.cpu, pindex=pindex, position=lst.index(head),
                                    list_length=len(lst))
    return PageLocation(**base, state=IN_USE)


def format_location(loc: PageLocation) -> str:
    """``buddyscope find``'s text."""
    lines = [f"pfn {loc.pfn:#x}  zone {loc.node}/{loc.zone}"
             + (f"  struct page {loc.struct_page:#x}" if loc.struct_page is not None
                else "  struct page unknown (the snapshot does not record vmemmap)")]
    lines.append(f"pageblock {loc.pageblock_pfn:#x}  {loc.pageblock_migratetype or 'type unknown'}")
    if loc.state == IN_USE:
        lines.append("on no free list and no pcp list: allocated (or in flight)")
    else:
        where = (f"free_area[{loc.order}].free_list[{loc.migratetype}]" if loc.state == BUDDY
                 else f"cpu {loc.cpu} pcp lists[{loc.pindex}] (order {loc.order}, {loc.migratetype})")
        inside = ("" if loc.block_pfn == loc.pfn
                  else f", page {loc.pfn - loc.block_pfn} of the block")  # type: ignore[operator]
        lines.append(f"free block {loc.block_pfn:#x} order {loc.order}{inside}")
        lines.append(f"on {where} at position {loc.position} of {loc.list_length}"
                     + ("  (the head: taken next)" if loc.position == 0 else ""))
    return "\n".join(lines)
