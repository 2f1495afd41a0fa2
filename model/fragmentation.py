"""
Fragmentation
-------------

The kernel's two fragmentation indices (``mm/vmstat.c``, the same in 5.10,
6.1, 6.12 and 7.2): ``unusable_free_index`` (debugfs
``extfrag/unusable_index``) and ``__fragmentation_index`` (debugfs
``extfrag/extfrag_index``, and what ``compaction_suitable`` asks to tell
fragmentation from lack of memory), both from ``free_area[order].nr_free``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

__all__ = ("ContigPageInfo", "contig_page_info", "fragmentation_index", "unusable_free_index")


@dataclasses.dataclass(frozen=True)
class ContigPageInfo:
    """``struct contig_page_info`` (mm/vmstat.c)."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """``fill_contig_page_info()``: free pages, free blocks, and blocks of at
    least *suitable_order* counted in units of that order, from ``nr_free``
    (every migratetype, HighAtomic and Isolate included)."""
    free_pages = total = suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def unusable_free_index(order: int, info: ContigPageInfo) -> int:
    """``unusable_free_index()``: thousandths of the free memory that cannot
    serve an allocation of *order*; 1000 when nothing is free."""
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index(order: int, info: ContigPageInfo) -> int:
    """``__fragmentation_index()``, in thousandths: -1000 when a block of
    *order* is free; else towards 0 a failure is for lack of memory, towards
    1000 for fragmentation."""
    requested = 1 << order
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total
