"""
Find
----

Where one page is in a snapshot: on which free list or pcp list, at which
position, in which free block, and the type of its pageblock; what crash's
``kmem -f ADDR`` and pwndbg's ``buddydump -f`` answer for a live kernel.

Pure Python over a :class:`~buddyscope.model.snapshot.Snapshot`; the TUI's
Find panel and the CLI's ``buddyscope find`` both call :func:`find_page`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot, Zone

__all__ = ("FoundPage", "find_page", "format_found", "parse_pfn_or_addr", "zone_spans")

#: Kernel virtual addresses (a ``struct page *``) start here on x86-64; a
#: number this large is never a PFN.
_KERNEL_VA = 0xFFFF_0000_0000_0000


@dataclasses.dataclass(frozen=True)
class FoundPage:
    """Where :func:`find_page` found a page."""

    pfn: int
    #: ``struct page`` address, when the snapshot knows ``vmemmap``.
    page: Optional[int]
    #: Node and zone holding the PFN (None: in no zone of the snapshot).
    node: Optional[int]
    zone: Optional[str]
    #: ``free_list``: the head of a free block on ``free_area[order].free_list[migratetype]``;
    #: ``pcp``: on ``per_cpu_pages.lists[pindex]`` of *cpu*; ``not free``: in the zone
    #: but on no list (allocated, or a tail of nothing the snapshot holds);
    #: ``no zone``: outside every zone.
    where: str
    #: Order of the block that holds the page (``free_list`` / ``pcp``).
    order: Optional[int] = None
    #: The list's migratetype (free list), or the pcp list's migratetypes.
    migratetype: Optional[str] = None
    cpu: Optional[int] = None
    pindex: Optional[int] = None
    #: Position on its list, head = 0, and the list's length.
    position: Optional[int] = None
    length: Optional[int] = None
    #: First PFN of the block holding the page (== *pfn* when it is the head).
    block: Optional[int] = None
    #: Migratetype of the page's pageblock (``get_pageblock_migratetype``).
    pageblock: Optional[str] = None

    @property
    def is_head(self) -> bool:
        return self.block == self.pfn

    def to_dict(self) -> dict:
        """For ``buddyscope find --json``: the fields, and the list in the
        kernel's words."""
        d = dataclasses.asdict(self)
        d["list"] = (f"free_area[{self.order}].free_list[{self.migratetype}]"
                     if self.where == "free_list" else
                     f"cpu{self.cpu} pcp lists[{self.pindex}]" if self.where == "pcp" else None)
        return d

    def describe(self) -> str:
        """One line, in the kernel's names."""
        page = f" (struct page {self.page:#x})" if self.page is not None else ""
        head = f"pfn {self.pfn:#x}{page}"
        if self.where == "no zone":
            return f"{head}: in no zone of this snapshot"
        zone = f"node {self.node} zone {self.zone}"
        pb = f"; pageblock {self.pageblock}" if self.pageblock else ""
        if self.where == "not free":
            return f"{head}: {zone}, on no free or pcp list{pb}"
        nth = (f"page +{self.pfn - self.block} of the order-{self.order} block at "
               f"{self.block:#x}" if not self.is_head else f"head of an order-{self.order} block")
        if self.where == "pcp":
            lst = f"cpu {self.cpu} pcp lists[{self.pindex}] ({self.migratetype})"
        else:
            lst = f"free_area[{self.order}].free_list[{self.migratetype}]"
        return (f"{head}: {zone}, {nth}, entry {self.position} of {self.length} on "
                f"{lst}{pb}")


def parse_pfn_or_addr(text: str) -> int:
    """A PFN or an address as typed: ``0x1234``, ``1234`` (decimal),
    ``ffffea0000048d00`` (hex without 0x when it has hex letters)."""
    t = text.strip().lower().replace("_", "")
    if not t:
        raise BuddyscopeError("give a PFN (0x1234) or a struct page address")
    try:
        if t.startswith("0x"):
            return int(t, 16)
        if any(c in "abcdef" for c in t):
            return int(t, 16)
        return int(t, 10)
    except ValueError:
        raise BuddyscopeError(f"not a PFN or address: {text.strip()!r}") from None


def _vmemmap(snap: Snapshot) -> Optional[tuple]:
    """(``vmemmap``, ``sizeof(struct page)``) when the snapshot recorded them
    (``kernel.vmemmap``, ``kernel.sizeof_page``; or in the capture's notes)."""
    k, n = snap.kernel, snap.capture.notes or {}
    base = k.vmemmap if k.vmemmap is not None else n.get("vmemmap")
    size = k.sizeof_page if k.sizeof_page is not None else n.get("sizeof_page")
    if isinstance(base, int) and isinstance(size, int) and size > 0:
        return base, size
    return None


def _pageblock(snap: Snapshot, zone: Zone, pfn: int) -> Optional[str]:
    pbs = zone.pageblock_migratetypes
    if pbs is None:
        return None
    pbo = snap.kernel.pageblock_order
    i = (pfn >> pbo) - (zone.start_pfn >> pbo)
    if 0 <= i < len(pbs) and 0 <= pbs[i] < len(snap.kernel.migratetypes):
        return snap.kernel.migratetypes[pbs[i]]
    return None


def find_page(snapshot: Snapshot, pfn_or_addr: Union[int, str]) -> FoundPage:
    """Where the page *pfn_or_addr* (a PFN, or a ``struct page`` address
    when the snapshot knows ``vmemmap``) is: the free list or pcp list
    holding it or the free block containing it, its position on that list,
    the block's order, and its pageblock's migratetype.

    Raises :class:`~buddyscope.errors.BuddyscopeError` when the snapshot has
    counts only (procfs) or an address is given without ``vmemmap``."""
    v = parse_pfn_or_addr(pfn_or_addr) if isinstance(pfn_or_addr, str) else int(pfn_or_addr)
    if v < 0:
        raise BuddyscopeError(f"not a PFN or address: {v}")
    if not snapshot.has_pfns:
        raise BuddyscopeError("this snapshot has counts only (procfs): no PFNs to search")
    vm = _vmemmap(snapshot)
    page = None
    if vm is not None and v >= vm[0]:
        base, size = vm
        if (v - base) % size:
            raise BuddyscopeError(f"{v:#x} is not the start of a struct page "
                                  f"(vmemmap {base:#x}, {size} bytes each)")
        page, pfn = v, (v - base) // size
    elif v >= _KERNEL_VA:
        raise BuddyscopeError(
            f"{v:#x} looks like a struct page address, but this snapshot does not record "
            "vmemmap: give a PFN")
    else:
        pfn = v
        if vm is not None:
            page = vm[0] + pfn * vm[1]
    k = snapshot.kernel
    for z in snapshot.zones:
        if not z.start_pfn <= pfn < z.end_pfn:
            continue
        pb = _pageblock(snapshot, z, pfn)
        for order, area in enumerate(z.free_area):
            size = 1 << order
            for mt, lst in enumerate(area.free_list or ()):
                for pos, head in enumerate(lst):
                    if head <= pfn < head + size:
                        return FoundPage(pfn, page, z.node, z.name, "free_list", order,
                                         k.migratetypes[mt], None, None, pos, len(lst), head, pb)
        for p in z.pcp:
            for pindex, lst in enumerate(p.lists or ()):
                pl = k.pcp_lists[pindex]
                size = 1 << pl.order
                for pos, head in enumerate(lst):
                    if head <= pfn < head + size:
                        mts = "/".join(k.migratetypes[m] for m in pl.migratetypes)
                        return FoundPage(pfn, page, z.node, z.name, "pcp", pl.order, mts,
                                         p.cpu, pindex, pos, len(lst), head, pb)
        return FoundPage(pfn, page, z.node, z.name, "not free", pageblock=pb)
    return FoundPage(pfn, page, None, None, "no zone")


def format_found(f: FoundPage) -> str:
    """``buddyscope find``'s text: a few lines, most telling first."""
    lines = [f"pfn {f.pfn:#x}  zone {f.node}/{f.zone}"
             + (f"  struct page {f.page:#x}" if f.page is not None
                else "  struct page unknown (the snapshot does not record vmemmap)")]
    lines.append(f"pageblock type {f.pageblock or 'unknown'}")
    if f.where == "not free":
        lines.append("on no free list and no pcp list: allocated (or in flight)")
    else:
        where = (f"free_area[{f.order}].free_list[{f.migratetype}]" if f.where == "free_list"
                 else f"cpu {f.cpu} pcp lists[{f.pindex}] (order {f.order}, {f.migratetype})")
        inside = "" if f.is_head else f", page {f.pfn - f.block} of the block"
        lines.append(f"free block {f.block:#x} order {f.order}{inside}")
        lines.append(f"on {where} at position {f.position} of {f.length}"
                     + ("  (the head: taken next)" if f.position == 0 else ""))
    return "\n".join(lines)


def zone_spans(snap: Snapshot) -> str:
    """The PFN ranges of the snapshot's zones, for a message."""
    return ", ".join(f"{z.node}/{z.name} {z.start_pfn:#x}-{z.end_pfn:#x}" for z in snap.zones)
