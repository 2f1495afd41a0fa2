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

Following a link costs a few Python operations, checks included: a chunk is
kept as those three words of every page (its ``next``, ``prev`` and
``private``), each seen through a ``memoryview`` slice indexed by page. And where a list steps
through memory at a constant stride (a zone broken up by one workload is
mostly such runs: page after page, every other page), a whole run is checked
at once: the ``next`` words of the pages the run would visit, their ``prev``
words and their ``private`` words are compared, each as one strided slice, with
the words the run must hold (made in C, see :func:`_sequence`), and its PFNs
are added as words made the same way. A run that does not hold costs one comparison and
the walk goes on link by link. A list with anything to report, or one that
reaches into a chunk that faulted, is walked again node by node
(:func:`_walk_checked`), which names each anomaly, so both give the same
result.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Callable, Optional, Sequence, TypeVar

import drgn

from buddyscope.model.snapshot import TORN_KINDS, Anomaly

__all__ = ("PageMap", "walk_list", "walk_until_whole")

_LIST_HEAD = struct.Struct("<QQ")
_CHUNK_SHIFT = 12  # 4096 pages per chunk


_Words = tuple  # (next, prev, private) words of a chunk's pages, each a memoryview
_UNREAD = object()


class PageMap:
    """Lazily read ``struct page`` array.

    Of each chunk read, only the words the walks follow are kept (``next``
    and ``prev`` of the list link, and ``private``: 24 bytes of a 64-byte
    ``struct page``), which also lets the allocator hand the next read the
    memory of the last one.

    :param prog: the kernel.
    :param vmemmap: address of ``struct page`` of PFN 0.
    :param sizeof_page: ``sizeof(struct page)``.
    """

    def __init__(self, prog: drgn.Program, vmemmap: int, sizeof_page: int,
                 chunk_shift: int = _CHUNK_SHIFT):
        self.prog = prog
        self.vmemmap = vmemmap
        self.sizeof_page = sizeof_page
        #: ``1 << chunk_shift`` pages are read at a time (at most 4096).
        self.chunk_shift = min(chunk_shift, _CHUNK_SHIFT)
        # Chunk number -> its bytes, read (or given) and not yet split into
        # words; None where the chunk faulted.
        self.chunks: dict[int, Optional[bytes]] = {}
        self.bytes_read = 0
        # link offset -> (the private offset its words hold, chunk number ->
        # the chunk's words, or None where it faulted).
        self._views: dict[int, tuple[int, dict[int, Optional[_Words]]]] = {}

    def views(self, link_offset: int, private_offset: int
              ) -> tuple[int, dict[int, Optional[_Words]]]:
        """(the private offset they hold, chunk number -> (``next``,
        ``prev``, ``private``) words of its pages, indexed by page within the
        chunk, or None where it faulted) for the chunks split so far; the
        private offset is the one asked first."""
        try:
            return self._views[link_offset]
        except KeyError:
            v = self._views[link_offset] = (private_offset, {})
            return v

    def chunk_views(self, index: int, link_offset: int) -> Optional[_Words]:
        """Chunk *index* split into the words :meth:`views` holds (read
        first if need be), or None if it faulted."""
        private_offset, views = self.views(link_offset, 0)
        data = self.chunks.pop(index, _UNREAD)
        if data is _UNREAD:
            data = self._read_chunk(index)
        if data is None:
            views[index] = None
            return None
        if sys.byteorder == "little":
            words = memoryview(data).cast("Q")  # type: ignore[arg-type]
        else:
            # The kernel's words are little-endian (as links() reads them).
            swapped = array.array("Q")
            swapped.frombytes(data)
            swapped.byteswap()
            words = memoryview(swapped)
        per_page = self.sizeof_page >> 3
        # A page's three words side by side, as in struct page: a walk that
        # jumps about touches one cache line per page, not three.
        kept = memoryview(bytearray(24 << self.chunk_shift)).cast("Q")
        for i, o in enumerate((link_offset, link_offset + 8, private_offset)):
            kept[i::3] = words[o >> 3::per_page]
        words.release()
        v: _Words = (kept[0::3], kept[1::3], kept[2::3])
        views[index] = v
        return v

    def _read_chunk(self, index: int) -> Optional[bytes]:
        size = self.sizeof_page << self.chunk_shift
        try:
            data = self.prog.read(self.vmemmap + index * size, size)
        except drgn.FaultError:
            return None
        self.bytes_read += size
        return data

    def u64(self, pfn: int, offset: int) -> int:
        """The 8 bytes at *offset* in the ``struct page`` of *pfn*, read alone."""
        return self.prog.read_u64(self.vmemmap + pfn * self.sizeof_page + offset)

    def links(self, pfn: int, offset: int) -> tuple[int, int]:
        """(next, prev) of the ``list_head`` at *offset* in the page of *pfn*, read alone."""
        addr = self.vmemmap + pfn * self.sizeof_page + offset
        return _LIST_HEAD.unpack(self.prog.read(addr, 16))  # type: ignore[return-value]


def walk_list(pagemap: PageMap, head_addr: int, first: int, link_offset: int,
              bound: int, where: str, anomalies: list[Anomaly],
              order: Optional[int] = None, private_offset: int = 0) -> Sequence[int]:
    """PFNs of the pages on the list at *head_addr*, head first (an array of
    4-byte words, or a list where a PFN does not fit in one).

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
    pfns = _walk_fast(pagemap, head_addr, first, link_offset, bound, order, private_offset)
    if pfns is not None:
        return pfns
    return _walk_checked(pagemap, head_addr, first, link_offset, bound, where, anomalies,
                         order, private_offset)


#: The walk's PFN arrays: 4-byte words, as :func:`~buddyscope.model.pfnarray.pfn_array`
#: keeps them while every PFN fits (a list with a larger one is walked again).
_U32 = next(c for c in "IL" if array.array(c).itemsize == 4)
# A run is tried over 16 pages first, twice as many after each run that held.
_RUN_MIN = 16
_RUN_MAX = 1 << _CHUNK_SHIFT
_SERIES: dict[tuple[int, int], tuple[int, int]] = {}
# Per word width: the bytes of _RUN_MAX + 1 words holding 1, and holding
# 0, 1, 2, ...: R and S of any length are a slice of them away.
_ONES = {w: (1).to_bytes(w, sys.byteorder) * (_RUN_MAX + 1) for w in (4, 8)}
_COUNT = {4: array.array(_U32, range(_RUN_MAX + 1)).tobytes(),
          8: array.array("Q", range(_RUN_MAX + 1)).tobytes()}
_SAME: dict[int, memoryview] = {}


def _sequence(start: int, step: int, n: int, width: int = 8) -> bytes:
    """The *width*-byte words ``start, start + step, ..., start + (n - 1) * step``
    (each must fit in a word), made in C: in one big integer whose word i
    is 1 (R) and one whose word i is i (S), ``start * R + step * S`` holds them."""
    try:
        r, s = _SERIES[n, width]
    except KeyError:
        r = int.from_bytes(_ONES[width][:n * width], sys.byteorder)
        s = int.from_bytes(_COUNT[width][:n * width], sys.byteorder)
        if len(_SERIES) < 1024:
            _SERIES[n, width] = (r, s)
    return (start * r + step * s).to_bytes(width * n, sys.byteorder)


def _same(value: int) -> memoryview:
    # _RUN_MAX words that all hold *value* (a free list's order).
    try:
        return _SAME[value]
    except KeyError:
        v = _SAME[value] = memoryview(array.array("Q", [value]) * _RUN_MAX)
        return v


def _walk_fast(pagemap: PageMap, head: int, first: int, link_offset: int, bound: int,
               order: Optional[int], private_offset: int) -> Optional[array.array]:
    """The PFNs of a list with nothing to report (every node a struct page
    in a chunk that reads, ``prev`` pointing back, ``private`` the order, the
    head reached within *bound*), else None."""
    if first == head:
        return array.array(_U32)
    size = pagemap.sizeof_page
    if size & (size - 1) or link_offset % 8 or private_offset % 8:
        return None  # the shifts and word views below need these
    shift = size.bit_length() - 1
    smask = size - 1
    chunk_shift = pagemap.chunk_shift
    cmask = (1 << chunk_shift) - 1
    base = pagemap.vmemmap + link_offset
    if head >= pagemap.vmemmap and not (head - base) & smask:
        return None  # a run could take the head for a page
    check_private = order is not None
    held, views = pagemap.views(link_offset, private_offset)
    if check_private and held != private_offset:
        return None
    same = _same(order) if order is not None else None
    # The PFNs: runs as bytes of 4-byte words in *pieces*, with the ones
    # taken link by link in between gathered in *singles* (one join at the end).
    pieces: list[bytes] = []
    singles = array.array(_U32)
    append = singles.append
    n = 0
    prev = head     # the node before the current one
    node = first    # the current node: checked below, then followed
    d = 0           # the last step, in pages
    run = _RUN_MIN
    while True:
        off = node - base
        pfn = off >> shift
        if off & smask or pfn < 0:
            return None
        index = pfn >> chunk_shift
        try:
            nexts, backs, privs = views[index]  # type: ignore[misc]
        except (KeyError, TypeError):
            got = views[index] if index in views else pagemap.chunk_views(index, link_offset)
            if got is None:
                return None
            nexts, backs, privs = got
        i = pfn & cmask
        if backs[i] != prev or (check_private and privs[i] != order):
            return None
        if n == bound or pfn >> 32:
            return None
        append(pfn)
        n += 1
        nxt = nexts[i]
        if nxt == head:
            return _joined(pieces, singles)
        step = ((nxt - base) >> shift) - pfn
        if step == d and step:
            # Two equal steps: check the next k pages of the run in one go,
            # within this chunk.
            k = min(run, bound - n - 1, (cmask - i) // d if d > 0 else i // -d)
            if k > 0 and not (pfn + k * d) >> 32:
                sd = d * size
                last = i + k * d
                stop: Optional[int] = last + d
                if stop < 0:  # type: ignore[operator]
                    stop = None
                expect = memoryview(_sequence(node, sd, k + 1)).cast("Q")
                if (nexts[i:last:d] == expect[1:]
                        and backs[i + d:stop:d] == expect[:k]
                        and (same is None or privs[i + d:stop:d] == same[:k])):
                    pieces.append(singles.tobytes())
                    del singles[:]
                    pieces.append(_sequence(pfn + d, d, k, 4))
                    n += k
                    run = min(run * 2, _RUN_MAX)
                    # The run's last page is checked: follow its link.
                    node += k * sd
                    pfn += k * d
                    nxt = nexts[last]
                    if nxt == head:
                        return _joined(pieces, singles)
                    step = ((nxt - base) >> shift) - pfn
                else:
                    run = _RUN_MIN
        d = step
        prev = node
        node = nxt


def _joined(pieces: list[bytes], singles: array.array) -> array.array:
    if not pieces:
        return singles
    pieces.append(singles.tobytes())
    out = array.array(_U32)
    out.frombytes(b"".join(pieces))
    return out


def _walk_checked(pagemap: PageMap, head_addr: int, first: int, link_offset: int,
                  bound: int, where: str, anomalies: list[Anomaly],
                  order: Optional[int] = None, private_offset: int = 0) -> list[int]:
    """:func:`walk_list` node by node, each check made and named in place
    (the parameters and anomalies are :func:`walk_list`'s)."""
    pfns: list[int] = []
    append = pfns.append
    size = pagemap.sizeof_page
    base = pagemap.vmemmap + link_offset
    chunk_shift = pagemap.chunk_shift
    mask = (1 << chunk_shift) - 1
    check_private = order is not None
    held, views = pagemap.views(link_offset, private_offset)
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
        index = pfn >> chunk_shift
        words = views.get(index, _UNREAD)
        if words is _UNREAD:
            words = pagemap.chunk_views(index, link_offset)
        try:
            if words is not None:
                i = pfn & mask
                nxt, back = words[0][i], words[1][i]  # type: ignore[index]
                if not check_private:
                    private = order
                elif held == private_offset:
                    private = words[2][i]  # type: ignore[index]
                else:
                    private = pagemap.u64(pfn, private_offset)
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


_T = TypeVar("_T")


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
