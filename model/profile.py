"""
Profile
-------

One named behaviour profile per kernel series: the places where the page
allocator of 5.10, 6.1, 6.12 and 7.2 (the Debian trees of the lab kernels)
behaves differently. The model's code is shared; it asks its profile only
where the kernel's code differs. A profile is chosen from the kernel's own
types as the snapshot recorded them (pcp list layout, ``struct
per_cpu_pages`` members, ``KernelInfo.features``), newest first, never from
the release string.

Line references (``L1234``) are to ``mm/page_alloc.c``, unless another file
is named, of Debian's ``linux-source`` packages 5.10.262-1, 6.1.192-3,
6.12.118-1 and 7.2.13-1.
``../shared/reference/allocator-*.md`` has the long story.
"""

from __future__ import annotations

import dataclasses

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import KernelInfo, Snapshot

__all__ = ("PROFILES", "Profile", "detect_profile", "detect_profile_from_counts", "profile_named")


@dataclasses.dataclass(frozen=True)
class Profile:
    """How one kernel series allocates and frees, where series differ."""

    #: The key of :data:`PROFILES` and what ``--profile`` names.
    name: str
    #: The GFP flag tables (:mod:`buddyscope.model.gfp`) of the kernel's
    #: ``gfp_flags=``: which ``__GFP_*`` bits exist, their values, the names
    #: ``show_gfp_flags()`` prints. Named after the Debian source tree they
    #: were generated from.
    gfp_table: str
    #: pcp refill size: ``"batch"`` (5.10 ``__rmqueue_pcplist``: pcp->batch),
    #: ``"batch_shift"`` (6.1: max(batch >> order, 2)), ``"nr_pcp_alloc"``
    #: (6.12, 7.2: alloc_factor, dynamic pcp->high).
    refill: str
    #: An empty pcp result goes on to ``rmqueue_buddy`` in the same zone
    #: (6.1+); in 5.10 ``rmqueue`` returns it and the next zone is tried.
    pcp_null_to_buddy: bool
    #: ``__rmqueue`` fallback: ``"steal"`` (5.10, 6.1: ``__rmqueue_fallback``
    #: + ``steal_suitable_fallback``, then retry) or ``"claim"`` (Debian 6.12,
    #: 7.2: ``__rmqueue_claim`` then ``__rmqueue_steal``, ``rmqueue_mode``).
    fallback: str
    #: ALLOC_NOFRAGMENT raises the fallback's minimum order to pageblock_order
    #: even for requests above it (5.10 ``__rmqueue_fallback`` L2777).
    nofragment_min_order_always: bool
    #: ``mm_page_alloc_zone_locked`` is emitted at ``__rmqueue`` exit with the
    #: requested migratetype (5.10), not in ``__rmqueue_smallest`` with the
    #: list's (6.1+).
    zone_locked_in_rmqueue: bool
    #: What sizes the drain of a pcp free (``free_unref_page_commit``):
    #: ``"batch"`` (5.10: pcp->batch pages once count >= pcp->high, the
    #: lists taken round robin with ``batch_free``), ``"free_factor"`` (6.1:
    #: batch << free_factor, which each pcp allocation halves; order 1-3
    #: frees with free_factor drain it all), ``"free_count"`` (6.12+:
    #: pcp->free_count, which each pcp allocation halves, against a
    #: pcp->high that ``nr_pcp_high`` tunes between high_min and high_max).
    pcp_free_batch: str
    #: Merging across pageblocks of different types in ``__free_one_page``:
    #: ``"isolate"`` (5.10: refused only against ISOLATE), ``"mergeable"``
    #: (6.1: refused unless both < MIGRATE_PCPTYPES), ``"retype"`` (6.12+: as
    #: 6.1, and the buddy's blocks take the freed page's type).
    merge: str
    #: ``split_large_buddy``: frees above pageblock_order go in per-pageblock
    #: chunks (6.12+).
    split_large_free: bool
    #: ``alloc_pages_bulk`` exists: pcp pages can leave with no
    #: ``mm_page_alloc`` (6.1+).
    bulk_allocator: bool
    #: The watermark's highatomic term: ``nr_reserved_highatomic`` (5.10, 6.1)
    #: or ``nr_free_highatomic`` (6.12+).
    highatomic_term_free: bool
    #: 6.12+: a zone below its high watermark sets ZONE_BELOW_HIGH.
    below_high_flag: bool
    #: 7.2: no pcp refill for ALLOC_HIGHATOMIC requests (``__rmqueue_pcplist``).
    no_refill_highatomic: bool
    #: 5.10's ALLOC_HARDER (the model's ALLOC_NON_BLOCK bit; ALLOC_HIGH is its
    #: ALLOC_MIN_RESERVE) where 6.1 split it into ALLOC_NON_BLOCK and
    #: ALLOC_HIGHATOMIC: HARDER|OOM alone skip the highatomic reserve and may
    #: count a HIGHATOMIC block (__zone_watermark_unusable_free L3572,
    #: __zone_watermark_ok L3604/L3656), HARDER takes min / 4 off with or
    #: without ALLOC_HIGH (L3612), and order > 0 with HARDER tries HIGHATOMIC
    #: first and reserves a block (rmqueue L3462, get_page_from_freelist L3919);
    #: ``gfp_to_alloc_flags`` gives it to every ``__GFP_ATOMIC`` request, which
    #: also drops ALLOC_CPUSET (L4446).
    alloc_harder: bool
    #: ``zone_watermark_fast``'s order-0 retry against the unboosted min is
    #: gated on the gfp's ``__GFP_ATOMIC`` (5.10 L3703, 6.1 L4148), not on
    #: ALLOC_MIN_RESERVE (6.12 L3327, 7.2 L3708).
    boost_retry_gfp_atomic: bool
    #: ``reserve_highatomic_pageblock`` (6.12 L2069, 7.2 L3437): nothing while
    #: 1% of the zone is under a pageblock, at most ALIGN(managed / 100,
    #: pageblock_nr_pages), a block that straddles the zone is not taken, and
    #: an allocation of pageblock_order or more retypes all its blocks. 5.10
    #: (L2637) / 6.1 (L2908): at most managed / 100 + pageblock_nr_pages, the
    #: page's block only.
    highatomic_reserve_aligned: bool
    #: ``reserve_highatomic_pageblock`` is called from ``rmqueue_buddy`` (7.2
    #: L3256), not for every page ``get_page_from_freelist`` returns (pcp
    #: pages too: 5.10 L3919, 6.1 L4364, 6.12 L3565).
    highatomic_reserve_in_rmqueue_buddy: bool
    #: 5.10/6.1: drains report the migratetype cached at free time
    #: (``page->index``) unless the zone has an isolated pageblock; 6.12+
    #: the pageblock's type at drain time.
    cached_pcp_migratetype: bool
    #: vmstat's ``refresh_cpu_vm_stats`` runs ``decay_pcp_high`` (6.12
    #: L2412, 7.2 L2564; vmstat.c 6.12 L839): pcp->high loses an eighth about
    #: once a second, with no event unless the pcp is drained to it (6.12+).
    pcp_high_decays: bool = False
    #: The commit's free_high needs ``free_count >= batch + high_min / 2``
    #: (7.2 ``free_frozen_page_commit`` L2862), not ``>= batch`` (6.12
    #: ``free_unref_page_commit``).
    free_high_adds_half_high_min: bool = False
    #: The commit drains in chunks of at most pcp->batch, each restarting at
    #: the freed page's pindex (7.2 L2885-L2913); 6.12 in one
    #: ``free_pcppages_bulk`` call.
    drain_in_batch_chunks: bool = False
    #: 6.12 ``try_to_steal_block`` refuses a block whose own pageblock type
    #: is HIGHATOMIC (a race guard); 7.2's ``try_to_claim_block`` does not.
    claim_skips_highatomic_block: bool = False
    #: 7.2: vfree() frees a vmalloc area's pages with ``free_pages_bulk`` ->
    #: ``__free_contig_range``: every page of a PFN-contiguous run is traced
    #: as an order-0 ``mm_page_free`` first, then the run is committed in
    #: naturally aligned chunks of up to ``MAX_PAGE_ORDER``
    #: (``free_prepared_contig_range``), e.g. a split order-2 vmalloc'd stack
    #: goes back as one order-2 block.
    contig_free_runs: bool = False
    #: The watermark checks read ``zone_page_state(zone, NR_FREE_PAGES)``,
    #: which lags the exact count by each CPU's unfolded ``vm_stat_diff``
    #: (5.10 L3675, 6.1 L4120, 6.12 L3298, 7.2 L3679). False: the model reads
    #: the exact count. 5.10/6.1 have no decay_pcp_high event to show
    #: vmstat_update's fold: their deltas fold only past the threshold.
    watermark_lagging_free: bool = False
    #: NR_FREE_PAGES changes once per block taken off a free list and on
    #: each side of a move between lists (6.12+ ``account_freepages`` in
    #: ``page_del_and_expand`` and ``move_to_free_list``); False: once per
    #: ``rmqueue_bulk`` batch, and moves leave it alone (5.10, 6.1).
    free_pages_per_take: bool = True
    #: A free that finds its CPU's pcp lock held (an interrupt during
    #: ``free_unref_folios``' commit loop) goes to the buddy: 6.x
    #: ``pcp_spin_trylock`` in ``free_unref_page`` / ``__free_frozen_pages``.
    pcp_trylock_free: bool = False
    #: The kernel can preempt an allocating task between its pcp take and
    #: its ``mm_page_alloc`` (7.2: Debian's CONFIG_PREEMPT_LAZY; 5.10-6.12
    #: run PREEMPT_VOLUNTARY), so another task's allocations can be traced
    #: in between.
    preemptible_alloc_window: bool = False
    #: ``nr_pcp_high`` keeps at most ``batch << 2`` pages on a pcp while
    #: kswapd reclaims the zone (ZONE_RECLAIM_ACTIVE, since 5.14's "mm/page_alloc:
    #: limit the number of pages on PCP lists when reclaim is active"); 6.7+
    #: also lower pcp->high by the freed run.
    pcp_high_reclaim_active: bool = False
    #: ``__isolate_free_page`` retypes a pageblock with
    #: ``move_freepages_block`` (6.12+), moving its other free pages to
    #: MOVABLE too; 5.10/6.1 only set the pageblock's type.
    isolate_moves_free_pages: bool = False
    #: ``__alloc_pages_slowpath``: a costly ``__GFP_NORETRY`` request gives up
    #: after its first direct compaction when that compaction was skipped or
    #: deferred, or with ``__GFP_THISNODE`` (5.10 L4733, 6.1 L5186, 6.12);
    #: 7.2 (``compact_first``, L4944) gives up there only with both
    #: ``__GFP_NORETRY`` and ``__GFP_THISNODE``, whatever compaction said,
    #: and otherwise goes on to one round of reclaim.
    noretry_costly_stops_on_skipped_compaction: bool = True
    #: ``isolate_freepages_block`` counts a taken block's pages after its
    #: first in ``nr_scanned`` (6.1 L614, 7.2 L649: ``nr_scanned +=
    #: isolated - 1``); 5.10 (L553) counts the block as one step.
    free_scan_counts_block_pages: bool = True
    #: ``__setup_per_zone_wmarks`` leaves ZONE_MOVABLE out of the lowmem
    #: pages and caps its min like highmem's (6.12 L6116, 7.2 L6506); 5.10
    #: (L7960) and 6.1 (L8719) treat it as any lowmem zone.
    movable_wmark_capped: bool = True


PROFILES = {
    p.name: p
    for p in (
        Profile("5.10", gfp_table="5.10",
                refill="batch", pcp_null_to_buddy=False, fallback="steal",
                nofragment_min_order_always=True, zone_locked_in_rmqueue=True,
                pcp_free_batch="batch", merge="isolate", split_large_free=False,
                bulk_allocator=False, highatomic_term_free=False, below_high_flag=False,
                no_refill_highatomic=False, alloc_harder=True, boost_retry_gfp_atomic=True,
                highatomic_reserve_aligned=False, highatomic_reserve_in_rmqueue_buddy=False,
                cached_pcp_migratetype=True,
                watermark_lagging_free=True, free_pages_per_take=False,
                free_scan_counts_block_pages=False, movable_wmark_capped=False),
        Profile("6.1", gfp_table="6.1",
                refill="batch_shift", pcp_null_to_buddy=True, fallback="steal",
                nofragment_min_order_always=False, zone_locked_in_rmqueue=False,
                pcp_free_batch="free_factor", merge="mergeable", split_large_free=False,
                bulk_allocator=True, highatomic_term_free=False, below_high_flag=False,
                no_refill_highatomic=False, alloc_harder=False, boost_retry_gfp_atomic=True,
                highatomic_reserve_aligned=False, highatomic_reserve_in_rmqueue_buddy=False,
                cached_pcp_migratetype=True, pcp_high_reclaim_active=True,
                watermark_lagging_free=True, free_pages_per_take=False,
                movable_wmark_capped=False),
        Profile("6.12", gfp_table="6.12",
                refill="nr_pcp_alloc", pcp_null_to_buddy=True, fallback="claim",
                nofragment_min_order_always=False, zone_locked_in_rmqueue=False,
                pcp_free_batch="free_count", pcp_high_decays=True, merge="retype",
                split_large_free=True,
                bulk_allocator=True, highatomic_term_free=True, below_high_flag=True,
                no_refill_highatomic=False, alloc_harder=False, boost_retry_gfp_atomic=False,
                highatomic_reserve_aligned=True, highatomic_reserve_in_rmqueue_buddy=False,
                cached_pcp_migratetype=False, claim_skips_highatomic_block=True,
                pcp_high_reclaim_active=True, isolate_moves_free_pages=True,
                watermark_lagging_free=True),
        Profile("7.2", gfp_table="7.2",
                refill="nr_pcp_alloc", pcp_null_to_buddy=True, fallback="claim",
                nofragment_min_order_always=False, zone_locked_in_rmqueue=False,
                pcp_free_batch="free_count", pcp_high_decays=True,
                free_high_adds_half_high_min=True, drain_in_batch_chunks=True, merge="retype",
                split_large_free=True,
                bulk_allocator=True, highatomic_term_free=True, below_high_flag=True,
                no_refill_highatomic=True, alloc_harder=False, boost_retry_gfp_atomic=False,
                highatomic_reserve_aligned=True, highatomic_reserve_in_rmqueue_buddy=True,
                cached_pcp_migratetype=False,
                contig_free_runs=True, pcp_trylock_free=True,
                preemptible_alloc_window=True, pcp_high_reclaim_active=True,
                isolate_moves_free_pages=True,
                noretry_costly_stops_on_skipped_compaction=False,
                watermark_lagging_free=True),
    )
}


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise BuddyscopeError(
            f"unknown kernel profile {name!r}: buddyscope models {', '.join(PROFILES)}"
        ) from None


def _pcp_members(snapshot: Snapshot) -> set[str]:
    return {name for z in snapshot.zones for p in z.pcp for name in p.fields}


def detect_profile(snapshot: Snapshot) -> Profile:
    """The profile of the kernel *snapshot* was read from, from its types.

    Newest first:
    - ``enum pageblock_bits`` has ``PB_migrate_isolate`` (Linux kernel commit
      "mm/page_isolation: make page isolation a standalone bit" (in v6.16):
      isolation became its own pageblock bit), or ``struct zone`` has
      ``trylock_free_pages`` -> 7.2;
    - ``per_cpu_pages`` has ``high_min`` (since Linux kernel commit
      90b41691b988 ("mm: add framework for PCP high auto-tuning") (in v6.7))
      -> 6.12;
    - ``per_cpu_pages`` has ``free_factor`` (since Linux kernel commit
      3b12e7e97938 ("mm/page_alloc: scale the number of pages that are batch
      freed") (in v5.14)) or pcp lists per order (since Linux kernel commit
      44042b449872 ("mm/page_alloc: allow high-order pages to be stored on
      the per-cpu lists") (in v5.14)) -> 6.1;
    - one order-0 pcp list per migratetype -> 5.10.
    """
    k: KernelInfo = snapshot.kernel
    features = set(getattr(k, "features", None) or ())
    members = _pcp_members(snapshot)
    orders = {pl.order for pl in k.pcp_lists}
    if "high_min" in members:
        if "PB_migrate_isolate" in features or "zone.trylock_free_pages" in features:
            return PROFILES["7.2"]
        if features:
            return PROFILES["6.12"]
        # A snapshot written before features were recorded: only the
        # migratetype enum is left to tell them apart, and it is config
        # (CMA), not version; refuse to guess silently.
        raise BuddyscopeError(
            "this snapshot predates kernel feature detection and its kernel could be 6.12 or "
            "7.2: re-read it, or name the profile with --profile"
        )
    if "free_factor" in members or orders - {0}:
        return PROFILES["6.1"]
    if orders == {0}:
        return PROFILES["5.10"]
    raise BuddyscopeError(
        f"kernel {k.release}: pcp lists {sorted(orders)} match no profile buddyscope models"
    )


def detect_profile_from_counts(snapshot: Snapshot) -> Profile:
    """The profile of a counts-only snapshot (procfs: no types to probe),
    from what ``/proc/zoneinfo`` (``zoneinfo_show_print``) prints, newest
    first: ``free_highatomic`` (7.2), ``promo`` (6.12; the 6.18 host too),
    ``cma`` (6.1; 5.10 prints none of them). A guess from the kernel's own
    output: the caller says so, and ``--profile`` overrides it."""
    fields = {k for z in snapshot.zones for k in z.fields}
    marks = {k for z in snapshot.zones for k in z.watermarks}
    if "nr_free_highatomic" in fields:
        return PROFILES["7.2"]
    if "promo" in marks:
        return PROFILES["6.12"]
    if "cma_pages" in fields:
        return PROFILES["6.1"]
    return PROFILES["5.10"]
