"""
Page Map
--------

``struct page`` memory read in bulk, and list walks over it.

Reading one drgn object per list node costs microseconds per node (a QMP
round trip or a core-file lookup each); a fragmented zone has hundreds of
thousands of nodes. Instead the vmemmap of a zone's valid PFN ranges is read
in chunks of at most a memory section's worth of ``struct page`` (2 MiB:
holes such as the PCI hole fault as a whole and are skipped), and the
``list_head`` links embedded in ``struct page`` are followed in Python.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional

import drgn
from drgn.helpers.linux.mm import for_each_valid_page_range

from buddyscope.model.snapshot import Anomaly

__all__ = ("PageMap", "walk_list")

_U64 = struct.Struct("<Q")
_LIST_HEAD = struct.Struct("<QQ")
_CHUNK_PAGES = 32768  # one 128 MiB section of 4 KiB pages: 2 MiB of struct page


class PageMap:
    """The ``struct page`` array of PFNs ``[start_pfn, end_pfn)``, read once.

    :param prog: the kernel.
    :param vmemmap: address of ``struct page`` of PFN 0.
    :param sizeof_page: ``sizeof(struct page)``.
    """

    def __init__(self, prog: drgn.Program, vmemmap: int, sizeof_page: int,
                 start_pfn: int, end_pfn: int):
        self.prog = prog
        self.vmemmap = vmemmap
        self.sizeof_page = sizeof_page
        self.start_pfn = start_pfn
        self.end_pfn = end_pfn
        # Chunk number -> (first pfn, bytes) for each range read whole; a
        # chunk that faulted is absent and its pages are read one by one.
        self._chunks: dict[int, tuple[int, bytes]] = {}
        self.holes = 0
        self.bytes_read = 0
        self._read(prog)

    def _read(self, prog: drgn.Program) -> None:
        size = self.sizeof_page
        for lo, hi, _ in for_each_valid_page_range(prog):
            pfn, hi = max(lo, self.start_pfn), min(hi, self.end_pfn)
            while pfn < hi:
                top = min(hi, (pfn // _CHUNK_PAGES + 1) * _CHUNK_PAGES)
                try:
                    data = prog.read(self.vmemmap + pfn * size, (top - pfn) * size)
                except drgn.FaultError:
                    self.holes += 1
                else:
                    # Valid ranges start and end on subsection boundaries, so
                    # one range per chunk is the rule; keep the first.
                    self._chunks.setdefault(pfn // _CHUNK_PAGES, (pfn, data))
                    self.bytes_read += len(data)
                pfn = top

    def pfn_of(self, page_addr: int) -> Optional[int]:
        """PFN of the ``struct page`` at *page_addr*, or None if it is no page."""
        off = page_addr - self.vmemmap
        if off < 0 or off % self.sizeof_page:
            return None
        return off // self.sizeof_page

    def u64(self, pfn: int, offset: int) -> int:
        """The 8 bytes at *offset* in the ``struct page`` of *pfn*."""
        got = self._chunks.get(pfn // _CHUNK_PAGES)
        if got is not None:
            first, data = got
            off = (pfn - first) * self.sizeof_page + offset
            if 0 <= off <= len(data) - 8:
                return _U64.unpack_from(data, off)[0]
        return self.prog.read_u64(self.vmemmap + pfn * self.sizeof_page + offset)

    def links(self, pfn: int, offset: int) -> tuple[int, int]:
        """(next, prev) of the ``list_head`` at *offset* in the page of *pfn*."""
        got = self._chunks.get(pfn // _CHUNK_PAGES)
        if got is not None:
            first, data = got
            off = (pfn - first) * self.sizeof_page + offset
            if 0 <= off <= len(data) - 16:
                return _LIST_HEAD.unpack_from(data, off)  # type: ignore[return-value]
        addr = self.vmemmap + pfn * self.sizeof_page + offset
        return _LIST_HEAD.unpack(self.prog.read(addr, 16))  # type: ignore[return-value]


def walk_list(pagemap: PageMap, head_addr: int, first: int, link_offset: int,
              bound: int, where: str, anomalies: list[Anomaly],
              check: Optional[Callable[[int], Optional[str]]] = None) -> list[int]:
    """PFNs of the pages on the list at *head_addr*, head first.

    Mirrors ``list_for_each_entry``, bounded and cycle-safe: it stops at
    *bound* nodes, on a node seen before, on a node that is not a
    ``struct page`` or cannot be read, and on a ``prev`` link that does not
    point back; each is recorded in *anomalies*.

    :param first: ``head->next`` (read with the structure holding the head).
    :param link_offset: offset of the ``list_head`` in ``struct page``
        (``buddy_list``, ``pcp_list`` or ``lru``).
    :param check: called with each PFN; a string it returns is an anomaly.
    """
    pfns: list[int] = []
    seen: set[int] = set()
    prev = head_addr
    node = first
    links = pagemap.links
    pfn_of = pagemap.pfn_of
    while node != head_addr:
        if len(pfns) >= bound:
            anomalies.append(Anomaly("bound", where, f"stopped after {bound} entries"))
            break
        if node in seen:
            anomalies.append(Anomaly("cycle", where, f"node {node:#x} seen twice after {len(pfns)} entries"))
            break
        pfn = pfn_of(node - link_offset)
        if pfn is None:
            anomalies.append(Anomaly("bad_link", where, f"entry {len(pfns)}: {node:#x} is not a struct page"))
            break
        try:
            nxt, back = links(pfn, link_offset)
        except drgn.FaultError as e:
            anomalies.append(Anomaly("unreadable", where, f"entry {len(pfns)} (pfn {pfn:#x}): {e}"))
            break
        if back != prev:
            anomalies.append(Anomaly("bad_link", where, f"entry {len(pfns)} (pfn {pfn:#x}): prev {back:#x} is not {prev:#x}"))
        if check is not None:
            problem = check(pfn)
            if problem:
                anomalies.append(Anomaly("not_buddy", where, f"pfn {pfn:#x}: {problem}"))
        seen.add(node)
        pfns.append(pfn)
        prev = node
        node = nxt
    return pfns
