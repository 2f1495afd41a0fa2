"""
Page Map
--------

``struct page`` memory read in bulk, and list walks over it.

Reading one drgn object per list node costs microseconds per node (a QMP
round trip or a core-file lookup each); a fragmented zone has hundreds of
thousands of nodes. Instead the vmemmap is read in chunks of 4096
``struct page`` (256 KiB), each the first time a list reaches into it, and
the ``list_head`` links embedded in ``struct page`` are followed in Python.
A zone with few free pages costs few chunks; a fragmented one is read about
once. A chunk that faults (a hole in the memory map) is read page by page.
"""

from __future__ import annotations

import struct
from typing import Callable, Optional, TypeVar

import drgn

from buddyscope.model.snapshot import TORN_KINDS, Anomaly

__all__ = ("PageMap", "walk_list", "walk_until_whole")

_U64 = struct.Struct("<Q")
_LIST_HEAD = struct.Struct("<QQ")
_CHUNK_SHIFT = 12  # 4096 pages per chunk

_T = TypeVar("_T")


class PageMap:
    """Lazily read ``struct page`` array.

    :param prog: the kernel.
    :param vmemmap: address of ``struct page`` of PFN 0.
    :param sizeof_page: ``sizeof(struct page)``.
    """

    def __init__(self, prog: drgn.Program, vmemmap: int, sizeof_page: int,
                 chunk_shift: int = _CHUNK_SHIFT):
        self.prog = prog
        self.vmemmap = vmemmap
        self.sizeof_page = sizeof_page
        #: ``1 << chunk_shift`` pages are read at a time.
        self.chunk_shift = chunk_shift
        # Chunk number -> its bytes, or None where the chunk faulted.
        self.chunks: dict[int, Optional[bytes]] = {}
        self.bytes_read = 0

    def chunk(self, index: int) -> Optional[bytes]:
        """The ``struct page`` bytes of PFNs ``index << chunk_shift`` on, read once."""
        try:
            return self.chunks[index]
        except KeyError:
            pass
        size = self.sizeof_page << self.chunk_shift
        try:
            data: Optional[bytes] = self.prog.read(self.vmemmap + index * size, size)
            self.bytes_read += size
        except drgn.FaultError:
            data = None
        self.chunks[index] = data
        return data

    def u64(self, pfn: int, offset: int) -> int:
        """The 8 bytes at *offset* in the ``struct page`` of *pfn*."""
        shift = self.chunk_shift
        data = self.chunk(pfn >> shift)
        if data is not None:
            return _U64.unpack_from(data, (pfn & ((1 << shift) - 1)) * self.sizeof_page + offset)[0]
        return self.prog.read_u64(self.vmemmap + pfn * self.sizeof_page + offset)

    def links(self, pfn: int, offset: int) -> tuple[int, int]:
        """(next, prev) of the ``list_head`` at *offset* in the page of *pfn*."""
        shift = self.chunk_shift
        data = self.chunk(pfn >> shift)
        if data is not None:
            return _LIST_HEAD.unpack_from(  # type: ignore[return-value]
                data, (pfn & ((1 << shift) - 1)) * self.sizeof_page + offset)
        addr = self.vmemmap + pfn * self.sizeof_page + offset
        return _LIST_HEAD.unpack(self.prog.read(addr, 16))  # type: ignore[return-value]


def walk_list(pagemap: PageMap, head_addr: int, first: int, link_offset: int,
              bound: int, where: str, anomalies: list[Anomaly],
              order: Optional[int] = None, private_offset: int = 0) -> list[int]:
    """PFNs of the pages on the list at *head_addr*, head first.

    Mirrors ``list_for_each_entry``, bounded and cycle-safe: it stops after
    *bound* nodes (and then tells a cycle from a long list), on a node that
    is not a ``struct page`` or cannot be read; a ``prev`` link that does not
    point back is noted. Each is recorded in *anomalies*.

    :param first: ``head->next`` (read with the structure holding the head).
    :param link_offset: offset of the ``list_head`` in ``struct page``
        (``buddy_list``, ``pcp_list`` or ``lru``).
    :param order: for a free list, the order every page's ``page->private``
        must hold (``set_buddy_order``).
    """
    pfns: list[int] = []
    append = pfns.append
    size = pagemap.sizeof_page
    base = pagemap.vmemmap + link_offset
    shift = pagemap.chunk_shift
    mask = (1 << shift) - 1
    chunks = pagemap.chunks
    unpack = _LIST_HEAD.unpack_from
    unpack_u64 = _U64.unpack_from
    check_private = order is not None
    private_delta = private_offset - link_offset
    prev = head_addr
    node = first
    n = 0
    while node != head_addr:
        if n == bound:
            kind = "cycle" if len(set(pfns)) < len(pfns) else "bound"
            anomalies.append(Anomaly(kind, where, f"stopped after {bound} entries"))
            break
        pfn, rest = divmod(node - base, size)
        if rest or pfn < 0:
            anomalies.append(Anomaly("bad_link", where, f"entry {n}: {node:#x} is not a struct page"))
            break
        data = chunks.get(pfn >> shift)
        if data is None:
            data = pagemap.chunk(pfn >> shift)
        try:
            if data is not None:
                off = (pfn & mask) * size + link_offset
                nxt, back = unpack(data, off)
                private = unpack_u64(data, off + private_delta)[0] if check_private else order
            else:
                nxt, back = pagemap.links(pfn, link_offset)
                private = pagemap.u64(pfn, private_offset) if check_private else order
        except drgn.FaultError as e:
            anomalies.append(Anomaly("unreadable", where, f"entry {n} (pfn {pfn:#x}): {e}"))
            break
        if back != prev:
            anomalies.append(Anomaly("bad_link", where,
                                     f"entry {n} (pfn {pfn:#x}): prev {back:#x} is not {prev:#x}"))
        if private != order:
            anomalies.append(Anomaly("not_buddy", where,
                                     f"pfn {pfn:#x}: page->private {private} on the order-{order} list"))
        append(pfn)
        n += 1
        prev = node
        node = nxt
    return pfns


def walk_until_whole(walk: Callable[[list[Anomaly]], _T], rewalks: int
                     ) -> tuple[_T, list[Anomaly], int]:
    """``walk(anomalies)`` again while it comes out torn (an anomaly of
    :data:`~buddyscope.model.snapshot.TORN_KINDS`), at most *rewalks* more
    times: on a running kernel a list changes under a walk, and the next walk
    (its pages read afresh, the caller's part) may find it whole. Returns the
    last walk's result, its anomalies and how many walks were made."""
    n = 0
    while True:
        found: list[Anomaly] = []
        result = walk(found)
        n += 1
        if n > rewalks or not any(a.kind in TORN_KINDS for a in found):
            return result, found, n
