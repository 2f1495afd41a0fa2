"""
Fragmentation
-------------

The kernel's two fragmentation indices of a zone, as ``mm/vmstat.c``
computes them for debugfs ``extfrag/unusable_index`` and
``extfrag/extfrag_index`` (the same in 5.10, 6.1, 6.12 and 7.2), from the
free block counts of a :class:`~buddyscope.model.snapshot.Zone`. The TUI's
Watermarks panel and ``buddyscope metrics`` show them.
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence

from buddyscope.model.snapshot import Zone

__all__ = ("ContigPageInfo", "FragRow", "contig_page_info", "fragmentation_index",
           "fragmentation_rows", "unusable_free_index")


@dataclasses.dataclass(frozen=True)
class ContigPageInfo:
    """``struct contig_page_info`` (mm/vmstat.c)."""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """``fill_contig_page_info()`` (mm/vmstat.c; the same in 5.10, 6.1, 6.12
    and 7.2): free pages, free blocks, and blocks of at least
    *suitable_order* counted in units of that order, from ``nr_free``."""
    free_pages = total = suitable = 0
    for order, blocks in enumerate(nr_free):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def unusable_free_index(order: int, info: ContigPageInfo) -> int:
    """``unusable_free_index()`` (mm/vmstat.c, debugfs
    ``extfrag/unusable_index``): thousandths of the free memory that cannot
    serve an allocation of *order*; 1000 when nothing is free."""
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index(order: int, info: ContigPageInfo) -> int:
    """``__fragmentation_index()`` (mm/vmstat.c, debugfs
    ``extfrag/extfrag_index``), in thousandths: -1000 when an allocation of
    *order* would succeed; towards 0 a failure would be for lack of memory,
    towards 1000 for fragmentation."""
    requested = 1 << order
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


@dataclasses.dataclass(frozen=True)
class FragRow:
    order: int
    #: Blocks of this order or larger, in units of this order.
    suitable: int
    unusable: int
    extfrag: int


def fragmentation_rows(zone: Zone) -> List[FragRow]:
    """Both indices for every order, as the kernel prints them in
    ``unusable_show_print`` / ``extfrag_show_print``."""
    nr_free = [a.nr_free for a in zone.free_area]
    rows = []
    for order in range(len(nr_free)):
        info = contig_page_info(nr_free, order)
        rows.append(FragRow(order, info.free_blocks_suitable, unusable_free_index(order, info),
                            fragmentation_index(order, info)))
    return rows
