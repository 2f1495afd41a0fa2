"""
Events
------

The names of the events buddyscope reads, spelled once: the kmem page
tracepoints (``include/trace/events/kmem.h``) and the two kprobe events
``record`` puts on the bulk allocator, which has no tracepoint. The parser
(:mod:`buddyscope.model.ftrace`), replay, the recorder and the tests use
these names.

Pure Python: imports neither drgn nor textual.
"""

from __future__ import annotations

__all__ = (
    "BULK_EVENTS",
    "EVENTS",
    "MM_PAGE_ALLOC",
    "MM_PAGE_ALLOC_EXTFRAG",
    "MM_PAGE_ALLOC_ZONE_LOCKED",
    "MM_PAGE_FREE",
    "MM_PAGE_FREE_BATCHED",
    "MM_PAGE_PCPU_DRAIN",
    "ALLOC_PAGES_BULK",
    "ALLOC_PAGES_BULK_RET",
    "RECLAIM_EVENTS",
    "DECAY_EVENTS",
    "VMSTAT_EVENTS",
    "ISOLATE_EVENTS",
    "WATERMARK_EVENTS",
    "MM_COMPACTION_ISOLATE_FREEPAGES",
    "MM_COMPACTION_FAST_ISOLATE_FREEPAGES",
    "COMPACTION_EVENTS",
    "FAST_SEARCH_CALLERS",
)

#: A block handed out (``__alloc_pages``, after ``get_page_from_freelist``).
MM_PAGE_ALLOC = "mm_page_alloc"
#: A block taken off the buddy lists under the zone lock
#: (``__rmqueue_smallest``, or ``__rmqueue`` on 5.10).
MM_PAGE_ALLOC_ZONE_LOCKED = "mm_page_alloc_zone_locked"
#: A free traced by ``free_pages_prepare``.
MM_PAGE_FREE = "mm_page_free"
#: A page of a batched free committed (``free_unref_page_list`` /
#: ``free_unref_folios``).
MM_PAGE_FREE_BATCHED = "mm_page_free_batched"
#: A pcp page sent back to the buddy (``free_pcppages_bulk``).
MM_PAGE_PCPU_DRAIN = "mm_page_pcpu_drain"
#: A fallback: a block of another migratetype stolen or claimed.
MM_PAGE_ALLOC_EXTFRAG = "mm_page_alloc_extfrag"

#: The kprobe on the bulk allocator's entry (``__alloc_pages_bulk``,
#: ``alloc_pages_bulk_noprof``): its gfp mask and ``nr_pages``.
ALLOC_PAGES_BULK = "alloc_pages_bulk"
#: The kretprobe on it: ``nr_populated``.
ALLOC_PAGES_BULK_RET = "alloc_pages_bulk_ret"

#: The kmem page tracepoints, in the order the parser documents them.
EVENTS = (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED,
          MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC_EXTFRAG)
#: The bulk allocator's kprobe events.
BULK_EVENTS = (ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET)
#: kswapd's reclaim window: kprobe events on ``balance_pgdat`` and its return.
RECLAIM_EVENTS = ("balance_pgdat", "balance_pgdat_ret")
#: vmstat's pcp->high decay: a kprobe event on ``decay_pcp_high`` (6.7+).
DECAY_EVENTS = ("decay_pcp_high",)
#: A CPU's vmstat deltas folded into the zone counters: a kprobe event on
#: ``refresh_cpu_vm_stats`` (vmstat_update, and quiet_vmstat when the CPU's
#: tick stops in idle).
VMSTAT_EVENTS = ("refresh_cpu_vm_stats",)
#: Compaction's free page isolation: kprobe events on ``__isolate_free_page``.
ISOLATE_EVENTS = ("isolate_free_page", "isolate_free_page_ret")
#: The callers ``isolate_free_page_ret`` names for compaction's fast free
#: search: ``fast_isolate_freepages``, or ``compaction_alloc`` where it is
#: inlined (Debian's 6.1 and 7.2 builds); ``isolate_freepages_block`` is
#: the scanner's.
FAST_SEARCH_CALLERS = frozenset(("fast_isolate_freepages", "compaction_alloc",
                                 "compaction_alloc_noprof"))
#: Watermark changes: a kretprobe event on ``setup_per_zone_wmarks``.
WATERMARK_EVENTS = ("setup_wmarks",)

#: Compaction's free scanner over one range (``isolate_freepages_block``,
#: include/trace/events/compaction.h): the range scanned and the pages
#: taken, no PFN of them.
MM_COMPACTION_ISOLATE_FREEPAGES = "mm_compaction_isolate_freepages"
#: Its search of the free lists (``fast_isolate_freepages``; Debian's 6.12
#: and 7.2 have it, 5.10 and 6.1 do not): the lowest PFN it takes and the
#: pages taken.
MM_COMPACTION_FAST_ISOLATE_FREEPAGES = "mm_compaction_fast_isolate_freepages"
#: The compaction tracepoints ``record`` enables where the kernel has them.
COMPACTION_EVENTS = (MM_COMPACTION_ISOLATE_FREEPAGES, MM_COMPACTION_FAST_ISOLATE_FREEPAGES)
