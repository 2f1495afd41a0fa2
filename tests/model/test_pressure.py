"""The free path under memory pressure: what the pcp free commit does while
kswapd reclaims (ZONE_RECLAIM_ACTIVE), the zone flags a snapshot carries,
the balance_pgdat kprobe events that show kswapd's window, and the longest
run of consecutive misses in replay's report.

Expectations are worked out by hand from the Debian source of each series
(``mm/page_alloc.c`` and ``mm/vmscan.c`` of ``linux-source-X.Y``); each test
names the function and line. States are built as in ``test_paths.py``.
"""

from __future__ import annotations

import pytest

from buddyscope.model.ftrace import parse_text
from buddyscope.model.replay import ReplayReport, AllocRecord

from test_paths import M, R, U, build, build_snapshot, freed, pcp_lists, replayed, zl

# Seven MOVABLE order-0 pages on cpu 0's pcp, oldest (the list's tail) last.
M7 = [0x1010, 0x1012, 0x1014, 0x1016, 0x1018, 0x101a, 0x101c]
F = 0x1020


def test_reclaim_active_6_1_keeps_at_most_four_batches():
    # 6.1 nr_pcp_high (L3451-3467): ZONE_RECLAIM_ACTIVE -> min(batch << 2,
    # pcp->high) = min(8, 9) = 8; count 8 >= 8 drains. nr_pcp_free (L3422)
    # with that high: max 8 - 2 = 6, batch << free_factor 0 = 2 < 6 so
    # free_factor becomes 1, clamp(2, 2, 6) = 2: the two oldest pages.
    a = build("6.1", [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    a.set_reclaim_active(1, True)
    drain = a.free(0, F, 0)
    assert drain == [(M7[6], 0, M), (M7[5], 0, M)]
    assert a.zones[0].pcp[0].free_factor == 1


def test_no_reclaim_6_1_keeps_pcp_high():
    # The same free without kswapd: count 8 < pcp->high 9, no drain.
    a = build("6.1", [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    assert a.free(0, F, 0) == []


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_reclaim_active_6_12_lowers_high_by_the_freed_run(series):
    # 6.12 nr_pcp_high (L2628; 7.2 L2777): high = clamp(20, 10, 40) = 20;
    # ZONE_RECLAIM_ACTIVE comes before the high_min == high_max and
    # ZONE_BELOW_HIGH tests (L2650): free_count 5 + 1 = 6 (free_unref_page_commit
    # L2701), pcp->high = max(20 - 6, 10) = 14, return min(2 << 2, 14) = 8;
    # count 8 >= 8. nr_pcp_free (L2603): clamp(free_count 6, 2, 8 - 2) = 6
    # pages, the list's six oldest (7.2: three chunks of batch 2, each from
    # the freed list again).
    a = build(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=20,
              pcp_fields={"high_min": 10, "high_max": 40, "free_count": 5})
    a.set_reclaim_active(1, True)
    drain = a.free(0, F, 0)
    assert [p for p, _, _ in drain] == M7[::-1][:6]
    pcp = a.zones[0].pcp[0]
    assert (pcp.high, pcp.count) == (14, 2)
    assert pcp_lists(a) == {(0, M): [F, M7[0]]}


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_reclaim_only_on_zones_up_to_highest_zoneidx(series):
    # update_reclaim_active (6.12 vmscan.c L6828): zones 0..highest_zoneidx.
    # DMA32 is zone 1: balance_pgdat for ZONE_DMA (0) leaves it alone.
    a = build(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=20,
              pcp_fields={"high_min": 10, "high_max": 40, "free_count": 5})
    a.set_reclaim_active(0, True)
    assert not a.zones[0].reclaim_active
    assert a.free(0, F, 0) == []


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_snapshot_zone_flags_load(series):
    # The probe reads zone->flags (enum zone_flags): a snapshot taken while
    # kswapd ran, or below the high watermark, starts the model there.
    snap = build_snapshot(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    snap.zones[0].fields.update({"ZONE_RECLAIM_ACTIVE": 1, "ZONE_BELOW_HIGH": 1})
    from buddyscope.model.allocator import Allocator

    z = Allocator(snap).zones[0]
    assert (z.reclaim_active, z.below_high) == (True, True)


def balance_pgdat(zoneidx):
    return f"balance_pgdat: (balance_pgdat+0x0/0xb9c) highest_zoneidx={zoneidx}"


BALANCE_RET = "balance_pgdat_ret: (kswapd+0x1d1/0x3a0 <- balance_pgdat)"


def test_balance_pgdat_events_parse():
    text = (f"  kswapd0-36 [000] d.... 1: {balance_pgdat(3)}\n"
            f"  kswapd0-36 [000] d.... 2: {BALANCE_RET}\n")
    ev = parse_text(text).events
    assert [(e.name, e.count) for e in ev] == [("balance_pgdat", 3), ("balance_pgdat_ret", None)]


def test_replay_follows_kswapd_window_6_1():
    # kswapd's balance_pgdat (vmscan.c 6.1 L7066 set_reclaim_active, L7199
    # clear_reclaim_active) around a free: inside, count 8 >= min(8, 9)
    # drains the two oldest pages (as above); after its return the next free
    # (count 7) keeps everything.
    snap = build_snapshot("6.1", [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    r = replayed(snap, ("kswapd0-36", balance_pgdat(3)),
                 ("rm-10", freed(F)),
                 ("rm-10", f"mm_page_pcpu_drain: page=(____ptrval____) pfn={M7[6]:#x} order=0 migratetype=1"),
                 ("rm-10", f"mm_page_pcpu_drain: page=(____ptrval____) pfn={M7[5]:#x} order=0 migratetype=1"),
                 ("kswapd0-36", BALANCE_RET),
                 ("rm-10", freed(0x1022)))
    rep = r.report
    assert (rep.drains, rep.drains_exact) == (1, 1)
    assert not r.alloc.zones[0].reclaim_active
    assert r.alloc.zones[0].pcp[0].count == 7


@pytest.mark.parametrize("series", ["5.10", "6.12"])
def test_balance_pgdat_takes_off_the_boost_it_started_with(series):
    # balance_pgdat (5.10 vmscan.c L3593/L3742, 6.12 L6901/L7063) notes each
    # zone's watermark_boost at its start and, at its end, takes that much
    # off: a boost added while it ran stays.
    snap = build_snapshot(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=9,
                          watermarks=(20, 25, 30), boost=512)
    r = replayed(snap, ("kswapd0-36", balance_pgdat(3)), ("kswapd0-36", BALANCE_RET))
    assert r.alloc.zones[0].boost == 0
    # A fallback while it ran boosts the zone again (boost_watermark): that
    # part stays.
    r = replayed(snap, ("kswapd0-36", balance_pgdat(3)))
    z = r.alloc.zones[0]
    r.alloc._set(z, "boost", z.boost + 256)
    [ret] = parse_text(f"  kswapd0-36 [000] d.... 9: {BALANCE_RET}\n").events
    r._on_reclaim(ret)
    assert z.boost == 256
    # A return with no entry traced (before the snapshot): the boost it
    # started with is not known; the model leaves it.
    r = replayed(snap, ("kswapd0-36", BALANCE_RET))
    assert r.alloc.zones[0].boost == 512


def test_longest_miss_run_counts_consecutive_misses():
    rep = ReplayReport("k", "6.1")
    for hit in (True, False, False, True, False, False, False, True):
        rep.records.append(AllocRecord(0, 0, 0, 0, "", 1, 1 if hit else 2, hit, "pcp", "pcp"))
    assert rep.longest_miss_run == 3
    assert rep.to_dict(records=False)["longest_miss_run"] == 3


def refresh(do_pagesets):
    return f"refresh_cpu_vm_stats: (refresh_cpu_vm_stats+0x0/0x3b0) do_pagesets={do_pagesets}"


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_refresh_cpu_vm_stats_folds_the_cpu_s_deltas(series):
    # NR_FREE_PAGES as the watermark checks read it (zone_page_state) lags
    # by each CPU's vm_stat_diff; refresh_cpu_vm_stats folds the CPU's
    # (vmstat_update; quiet_vmstat as the tick stops in idle). Traced by
    # record's kprobe: folded at the event.
    from buddyscope.model.replay import Replayer

    [e] = parse_text(f"  <idle>-0 [001] d.... 1: {refresh(0)}\n").events
    assert (e.name, e.count, e.cpu) == ("refresh_cpu_vm_stats", 0, 1)
    snap = build_snapshot(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=20,
                          pcp_fields={"vm_stat_diff_nr_free_pages": -5})
    r = replayed(snap, ("rm-10", freed(F)))
    z = r.alloc.zones[0]
    assert z.vm_diff[0] == -5 and r.alloc.zone_page_state(z) == z.free_pages + 5
    r = replayed(snap, ("kworker/0:1-20", refresh(1)))
    z = r.alloc.zones[0]
    assert z.vm_diff[0] == 0 and r.alloc.zone_page_state(z) == z.free_pages

    # Untraced, an event of the CPU's idle task after a task's shows that
    # the CPU went idle in between: folded there. The idle task's first
    # event, or one while the kprobe is enabled, folds nothing.
    def run(lines, enabled=()):
        text = "".join(f"  {who} [000] d..2. {ts}: {line}\n" for ts, (who, line) in enumerate(lines, 1))
        r = Replayer(snap, events_enabled=list(enabled) or None)
        r.run(parse_text(text).events)
        return r.alloc.zones[0].vm_diff[0]

    assert run([("rm-10", freed(F)), ("<idle>-0", freed(0x1022))]) == 0
    assert run([("<idle>-0", freed(F)), ("<idle>-0", freed(0x1022))]) == -5
    assert run([("rm-10", freed(F)), ("<idle>-0", freed(0x1022))],
               enabled=["mm_page_free", "refresh_cpu_vm_stats"]) == -5


def decay(zone_start=0x1000):
    return f"decay_pcp_high: (decay_pcp_high+0x0/0xc0) zone_start_pfn={zone_start:#x}"


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_traced_decay_lowers_high(series):
    # vmstat's decay_pcp_high (6.12 L2412, 7.2 L2564): high = max(count -
    # (batch << 5), high - high / 8, high_min) = max(7 - 64, 20 - 2, 4) = 18,
    # then 18 - 2 = 16; count 7 <= high: nothing drained, so only the
    # kprobe event shows it.
    snap = build_snapshot(series, [M, U, R], pcp={(0, M): M7}, batch=2, high=20,
                          pcp_fields={"high_min": 4, "high_max": 40})
    r = replayed(snap, ("kworker/0:1-20", decay()), ("kworker/0:1-20", decay()))
    assert r.alloc.zones[0].pcp[0].high == 16
    assert r.report.vmstat_drains == 0


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_traced_decay_predicts_its_drain(series):
    # count 8, high 8: decay to max(8 - 64, 8 - 1, 2) = 7, to_drain 1;
    # free_pcppages_bulk(min(1, batch), pindex 0) (6.12 L2425): lists[0]
    # is empty, lists[1]'s tail goes. Foreseen exactly, and no silent decay
    # is assumed when the trace shows them.
    m8 = M7 + [0x101e]
    snap = build_snapshot(series, [M, U, R], pcp={(0, M): m8}, batch=2, high=8,
                          pcp_fields={"high_min": 2, "high_max": 40})
    who = "kworker/0:1-20"
    r = replayed(snap, (who, decay()),
                 (who, f"mm_page_pcpu_drain: page=(____ptrval____) pfn={m8[-1]:#x} order=0 migratetype=1"))
    rep = r.report
    assert (rep.vmstat_drains, rep.vmstat_drains_exact) == (1, 1)
    assert r.alloc.zones[0].pcp[0].high == 7


def drain_line(pfn, mt=M):
    return f"mm_page_pcpu_drain: page=(____ptrval____) pfn={pfn:#x} order=0 migratetype={mt}"


def test_replay_infers_reclaim_from_an_early_drain_6_1_and_drops_it_when_refuted():
    # No balance_pgdat events. The kernel drains 2 at count 8 < pcp->high 9:
    # 6.1 nr_pcp_high (L3451) allows that only with ZONE_RECLAIM_ACTIVE
    # (min(batch << 2, high) = 8), whose nr_pcp_free (L3422) grew
    # free_factor to 1. Then count 6 + 1 = 7 < 8: nothing; 8 >= 8: batch <<
    # 1 = 4 pages (clamp(4, 2, 6)), foreseen, free_factor 2.
    snap = build_snapshot("6.1", [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    who = "rm-10"
    early = [(who, freed(F)), (who, drain_line(M7[6])), (who, drain_line(M7[5]))]
    r = replayed(snap, *early, (who, freed(0x1022)), (who, freed(0x1024)),
                 (who, drain_line(M7[4])), (who, drain_line(M7[3])),
                 (who, drain_line(M7[2])), (who, drain_line(M7[1])))
    rep = r.report
    assert (rep.drains, rep.drains_exact, rep.inferred_reclaim) == (2, 1, 1)
    assert r.alloc.zones[0].reclaim_active
    assert r.alloc.zones[0].pcp[0].free_factor == 2
    # The same, but the kernel keeps all 8 pages: kswapd's window is over.
    r = replayed(snap, *early, (who, freed(0x1022)))
    assert r.alloc.zones[0].reclaim_active
    r = replayed(snap, *early, (who, freed(0x1022)), (who, freed(0x1024)))
    assert not r.alloc.zones[0].reclaim_active


def test_a_reclaim_window_is_not_inferred_where_balance_pgdat_was_traced():
    # The same early drain, in a recording whose balance_pgdat kprobes were
    # enabled and never hit (its provenance's events_enabled): kswapd did
    # not run, so no reclaim window is inferred (the drain is a miss).
    from buddyscope.model.replay import Replayer

    snap = build_snapshot("6.1", [M, U, R], pcp={(0, M): M7}, batch=2, high=9)
    who = "rm-10"
    text = "".join(f"  {w} [000] d..2. {ts}: {line}\n" for ts, (w, line) in enumerate(
        [(who, freed(F)), (who, drain_line(M7[6])), (who, drain_line(M7[5]))], 1))
    for enabled, inferred in ((None, 1), (["balance_pgdat", "balance_pgdat_ret"], 0)):
        r = Replayer(snap, events_enabled=enabled)
        rep = r.run(parse_text(text).events)
        assert (rep.drains, rep.drains_exact, rep.inferred_reclaim) == (1, 0, inferred)
        assert r.alloc.zones[0].reclaim_active == bool(inferred)


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_miss_keeps_rmqueue_pcplist_free_count_halving(series):
    # rmqueue_pcplist halves free_count before it looks at the list (6.12
    # L3126, 7.2 L3379), whichever page it then finds. The kernel hands out
    # the list's second page (the model foresaw the head): a miss, whose
    # trial is rolled back; free_count is still 8 >> 1 = 4, as the kernel's.
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 9, U)], pcp={(0, M): M7[:2]},
                          batch=2, high=20, pcp_fields={"high_min": 4, "high_max": 40,
                                                        "free_count": 8})
    r = replayed(snap, ("sh-7", f"mm_page_alloc: page=(____ptrval____) pfn={M7[1]:#x} order=0 "
                                "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"))
    assert (r.report.allocations, r.report.hits) == (1, 0)
    assert r.alloc.zones[0].pcp[0].free_count == 4


def alloc_line(pfn, mt=M):
    return (f"mm_page_alloc: page=(____ptrval____) pfn={pfn:#x} order=0 migratetype={mt} "
            "gfp_flags=GFP_HIGHUSER_MOVABLE")


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_recovery_keeps_pages_freed_since_the_last_traced_allocation(series):
    # The pcp list is H Z Y. sh takes H (a hit), then frees F: F Z Y. cat is
    # then traced taking Y. Z was on the list at sh's allocation and nothing
    # traced took it: gone untraced (the bulk allocator; on 7.2 also a task
    # preempted before its mm_page_alloc). F was freed after that
    # allocation, maybe after cat's take too (traced before its
    # mm_page_alloc): no event shows it taken, so it stays on the list.
    H, Z, Y = M7[0], M7[1], M7[2]
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 9, U)], pcp={(0, M): [H, Z, Y]},
                          batch=2, high=20, pcp_fields={"high_min": 4, "high_max": 40})
    r = replayed(snap, ("sh-7", alloc_line(H)), ("sh-7", freed(F)), ("cat-8", alloc_line(Y)))
    assert r.report.hits == 1
    assert pcp_lists(r.alloc) == {(0, M): [F]}
    assert r.report.contradictions["pcp_pages_taken_untraced"] == 1


VMEMMAP, SIZEOF_PAGE = 0xffffea0000000000, 64


def isolate(pfn, order):
    return (f"isolate_free_page: (__isolate_free_page+0x0/0x315) "
            f"page={VMEMMAP + pfn * SIZEOF_PAGE:#x} order={order}")


def isolated(nr):
    return f"isolate_free_page_ret: (isolate_freepages_block+0x1a3/0x454 <- __isolate_free_page) nr={nr}"


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_replay_applies_compaction_free_page_isolation(series):
    # __isolate_free_page (5.10 L3300, 6.12 L2896, 7.2 L3123) takes a free
    # block off its list with no kmem event; the kprobe events give its
    # struct page (the snapshot's vmemmap turns it into a PFN) and what it
    # returned. An order-9 block is at least half a pageblock: its
    # UNMOVABLE pageblock becomes MOVABLE. A refused isolation (0: the
    # watermark check) changes nothing.
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 9, U), (0x1400, 3, R)])
    snap.kernel.vmemmap, snap.kernel.sizeof_page = VMEMMAP, SIZEOF_PAGE
    who = "kcompactd0-30"
    r = replayed(snap, (who, isolate(0x1200, 9)), (who, isolated(512)),
                 (who, isolate(0x1400, 3)), (who, isolated(0)))
    a = r.alloc
    assert not a.is_free(0x1200) and a.is_free(0x1400)
    assert a.zones[0].pageblocks == [M, M, R]
    assert r.report.isolated_pages == 512


def isolated_range(start, end, nr_scanned, nr_taken):
    return (f"mm_compaction_isolate_freepages: range=({start:#x} ~ {end:#x}) "
            f"nr_scanned={nr_scanned} nr_taken={nr_taken}")


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_replay_applies_the_free_scanner_range_without_kprobes(series):
    # isolate_freepages_block (5.10 L553, 6.1 L541, 6.12 L589, 7.2 L574)
    # takes every free block whose first page its walk steps on; after a
    # take it goes on from the block's last page plus the stride. Range
    # 0x1000-0x1014, 12 pages in 20 steps (6.1+ count a taken block's
    # pages, 5.10 counts it as one step: 10): with stride 1 the order-3
    # block at 0x1000 and the order-2 one at 0x1010 (8 + 4 pages,
    # 1 + 7 + 8 + 4 steps; 5.10 1 + 8 + 1); stride 2
    # steps from 0x1007 to 0x1009, ..., 0x1013 and takes 8 pages, as do 4
    # to 32: only stride 1 took 12. 0x1018 is past the range's end. The
    # second range, 0x1040-0x1060: one order-0 page in 16 steps of 0x1040
    # and 0x1043: stride 1 would take both, stride 2 takes 0x1040 in 16
    # steps, 4 and up in fewer.
    snap = build_snapshot(series, [M, U, R], free=[(0x1000, 3, M), (0x1010, 2, M), (0x1018, 0, M),
                                                   (0x1040, 0, M), (0x1043, 0, M)])
    who = "kcompactd0-30"
    steps = 10 if series == "5.10" else 20
    r = replayed(snap, (who, isolated_range(0x1000, 0x1014, steps, 12)),
                 (who, isolated_range(0x1040, 0x1060, 16, 1)))
    a = r.alloc
    assert [a.is_free(p) for p in (0x1000, 0x1010, 0x1018, 0x1040, 0x1043)] == [
        False, False, True, False, True]
    assert r.report.isolated_pages == 13
    assert not r.report.contradictions
    # Given back by release_free_list (6.12+: the block; 5.10, 6.1:
    # split_map_pages made it order-0 pages): frees of pages the model
    # holds as compaction's, not of free pages (to the buddy or, 6.1+, a
    # pcp list of order 2).
    r2 = replayed(snap, (who, isolated_range(0x1000, 0x1014, steps, 12)), (who, freed(0x1010, 2)))
    assert not r2.report.contradictions
    assert r2.alloc.is_free(0x1010) or 0x1010 in r2.alloc.on_pcp


def fast_isolated(min_pfn, free_pfn, nr_scanned, nr_taken):
    return (f"mm_compaction_fast_isolate_freepages: range=({min_pfn:#x} ~ {free_pfn:#x}) "
            f"nr_scanned={nr_scanned} nr_taken={nr_taken}")


def test_replay_takes_the_fast_search_block_with_its_pageblock():
    # fast_isolate_freepages (7.2 L1553) took one order-0 MOVABLE page at
    # min_pfn 0x1000 or above and names none; fast_isolate_around (L1507)
    # then walks the page's pageblock with stride 1: 0x1000-0x1200, 512
    # steps, 2 pages taken. The model still holds the fast search's page
    # free, so its walk takes 3: that page is one of them, and the three
    # are what compaction holds after both.
    snap = build_snapshot("7.2", [M, U, R], free=[(0x1004, 0, M), (0x1009, 0, M), (0x1100, 0, M),
                                                  (0x1400, 0, M)])
    r = replayed(snap, ("sh-125", fast_isolated(0x1000, 0x1600, 3, 1)),
                 ("sh-125", isolated_range(0x1000, 0x1200, 512, 2)))
    a = r.alloc
    assert [a.is_free(p) for p in (0x1004, 0x1009, 0x1100, 0x1400)] == [False, False, False, True]
    assert r.report.isolated_pages == 3 and not r.report.contradictions
    assert not [w for w in r.report.windows if w[0] == "compaction"]


def test_replay_marks_where_the_fast_search_may_have_taken():
    # A fast search with no walk after it (direct async compaction returns
    # before fast_isolate_around, 7.2 L1518): its page stays unknown. A
    # MOVABLE request's next miss predicting a block at min_pfn 0x1200 or
    # above (0x1400) is compaction's; below it (0x1004), or for another
    # migratetype, it is not.
    import types
    snap = build_snapshot("7.2", [M, U, R], free=[(0x1004, 0, M), (0x1400, 0, M)])
    r = replayed(snap, ("sh-125", fast_isolated(0x1200, 0x1600, 3, 1)), ("sh-125", freed(0x1500)))
    assert r.alloc.is_free(0x1004) and r.alloc.is_free(0x1400)
    movable, unmovable = types.SimpleNamespace(migratetype=M), types.SimpleNamespace(migratetype=U)
    assert not r._fast_search_explains(0x1004, movable)
    assert not r._fast_search_explains(0x1400, unmovable)
    assert [w[0] for w in r.report.windows] == ["compaction"]
    # One search, one miss explained.
    assert r._fast_search_explains(0x1400, movable)
    assert not r._fast_search_explains(0x1400, movable)


def test_move_freelist_head_rotates_the_list_to_start_at_the_block():
    # move_freelist_head (6.1 L1319, 7.2 L1479): list_cut_before the block,
    # list_splice_tail what was cut. The journal puts the list back.
    a = build("6.1", [M, U, R], free=[(0x1000, 0, M), (0x1002, 0, M), (0x1004, 0, M), (0x1006, 0, M)])
    assert a.free_list(0, 0, M) == [0x1000, 0x1002, 0x1004, 0x1006]
    with a.trial():
        a.move_freelist_head(0x1004)
        assert a.free_list(0, 0, M) == [0x1004, 0x1006, 0x1000, 0x1002]
    assert a.free_list(0, 0, M) == [0x1000, 0x1002, 0x1004, 0x1006]
    a.move_freelist_head(0x1000)
    assert a.free_list(0, 0, M) == [0x1000, 0x1002, 0x1004, 0x1006]


def test_replay_rotates_the_list_at_a_fast_search_take():
    # The kprobes name the block and the return its caller: taken by the
    # fast search (compaction_alloc, where fast_isolate_freepages is
    # inlined), the list was rotated to start at it first (6.1 L1490), so
    # the next refill takes what followed it.
    snap = build_snapshot("6.1", [M, U, R], free=[(0x1000, 0, M), (0x1002, 0, M), (0x1004, 0, M),
                                                  (0x1006, 0, M)])
    snap.kernel.vmemmap, snap.kernel.sizeof_page = VMEMMAP, SIZEOF_PAGE
    ret = "isolate_free_page_ret: (compaction_alloc+0x33a/0xa20 <- __isolate_free_page) nr=1"
    r = replayed(snap, ("dd-304", isolate(0x1002, 0)), ("dd-304", ret))
    assert r.alloc.free_list(0, 0, M) == [0x1004, 0x1006, 0x1000]
    # From the scanner (isolate_freepages_block): no rotation.
    r = replayed(snap, ("dd-304", isolate(0x1002, 0)), ("dd-304", isolated(1)))
    assert r.alloc.free_list(0, 0, M) == [0x1000, 0x1004, 0x1006]


def thp_alloc(pfn, order, gfp="GFP_TRANSHUGE", mt=M):
    return f"mm_page_alloc: page=(____ptrval____) pfn={pfn:#x} order={order} migratetype={mt} gfp_flags={gfp}"


@pytest.mark.parametrize("series", ["5.10", "7.2"])
def test_a_captured_block_is_no_refill_and_its_miss_is_compaction(series):
    # compaction_capture (5.10 L849, 7.2 L728): the task's direct compaction
    # freed a migrated page (0x1500) and __free_one_page handed the block it
    # completed (0x1200, order 9) to the task: its mm_page_alloc has no
    # removal event before it. The model, holding 0x1000 first on the
    # order-9 list, predicted that: a miss, compaction's, and no refill.
    snap = build_snapshot(series, [M, M, M], free=[(0x1000, 9, M), (0x1200, 9, M)])
    r = replayed(snap, ("dd-300", freed(0x1500)), ("dd-300", thp_alloc(0x1200, 9)))
    rep = r.report
    assert rep.captures == 1 and rep.refills == 0
    [rec] = rep.records
    assert (rec.predicted_pfn, rec.actual_path, rec.reason) == (0x1000, "capture", "compaction")
    assert rep.reasons == {"compaction": 1}
    # The same allocation with no free of the task before it: not a capture.
    r = replayed(snap, ("dd-300", thp_alloc(0x1200, 9)))
    assert r.report.captures == 0 and r.report.records[0].actual_path != "capture"


@pytest.mark.parametrize("series", ["5.10", "7.2"])
def test_a_range_ends_at_the_block_the_watermark_check_refused(series):
    # __isolate_free_page's watermark check refused the free page at 0x1002:
    # the step was counted (nr_scanned 3), the walk broke there, and the
    # range ends at it. 0x1000 was taken; 0x1002 is still free.
    snap = build_snapshot(series, [M, U, R], free=[(0x1000, 0, M), (0x1002, 0, M)])
    r = replayed(snap, ("kcompactd0-30", isolated_range(0x1000, 0x1002, 3, 1)))
    assert not r.alloc.is_free(0x1000) and r.alloc.is_free(0x1002)
    assert r.report.isolated_pages == 1 and not r.report.contradictions


@pytest.mark.parametrize("series", ["6.1", "7.2"])
def test_a_refill_from_the_middle_of_a_list_shows_it_rotated(series):
    # The order-0 MOVABLE list is 0x1000, 0x1002, ... 0x100a; the kernel's
    # refill took 0x1004 then 0x1006: its list started at 0x1004 (the fast
    # free search's move_freelist_head, untraced, 6.1 L1490). The model's
    # prediction (0x1000) is a miss; its list is rotated as the kernel's
    # was, so what is left starts at 0x1008 and the next take is a hit.
    free = [(p, 0, M) for p in range(0x1000, 0x100c, 2)]
    snap = build_snapshot(series, [M, U, R], free=free)
    r = replayed(snap, ("dd-304", zl(0x1004, M)), ("dd-304", zl(0x1006, M)),
                 ("dd-304", alloc_line(0x1004)))
    assert r.report.inferred_rotations == 1 and r.report.hits == 0
    assert r.alloc.free_list(0, 0, M) == [0x1008, 0x100a, 0x1000, 0x1002]
    # A run that starts at the head is no rotation; nor is one that skips.
    r = replayed(snap, ("dd-304", zl(0x1000, M)), ("dd-304", zl(0x1002, M)),
                 ("dd-304", alloc_line(0x1000)))
    assert r.report.inferred_rotations == 0
    r = replayed(snap, ("dd-304", zl(0x1004, M)), ("dd-304", zl(0x1008, M)),
                 ("dd-304", alloc_line(0x1004)))
    assert r.report.inferred_rotations == 0


def fast_search(start, end, nr_scanned, nr_taken):
    return (f"mm_compaction_fast_isolate_freepages: range=({start:#x} ~ {end:#x}) "
            f"nr_scanned={nr_scanned} nr_taken={nr_taken}")


FAST_LIST = [(0x1010, 0, M), (0x1008, 0, M), (0x1002, 0, M), (0x1000, 0, M)]


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_works_out_the_fast_search_from_its_tracepoint(series):
    # fast_isolate_freepages (6.12 L1540, 7.2 L1553) reads the order-0
    # MOVABLE list from its tail: 0x1000, 0x1002, 0x1008, 0x1010. min_pfn
    # 0x1000 and free_pfn 0x1400 make low_pfn 0x1200 whatever the migrate
    # scanner's PFN: every entry is a candidate below it, and each one
    # higher than the last halves the limit. Only a limit of 16
    # (fast_search_fail 0) stops after 3 entries: it takes the highest seen,
    # 0x1008, after move_freelist_head rotated the list to start there.
    snap = build_snapshot(series, [M, U, R], free=FAST_LIST)
    r = replayed(snap, ("dd-300", fast_search(0x1000, 0x1400, 3, 1)))
    assert r.report.fast_searches_resolved == 1 and r.report.isolated_pages == 1
    assert not r.alloc.is_free(0x1008)
    assert r.alloc.free_list(0, 0, M) == [0x1002, 0x1000, 0x1010]
    # 2 entries: limits 8 and 4 both stop at 0x1002 and take it: one search.
    r = replayed(snap, ("dd-300", fast_search(0x1000, 0x1400, 2, 1)))
    assert not r.alloc.is_free(0x1002) and r.alloc.free_list(0, 0, M) == [0x1000, 0x1010, 0x1008]


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_a_fast_search_that_takes_nothing_still_rotates_the_list(series):
    # min_pfn 0x1200: no entry is a candidate. Only a limit of 2 stops
    # after 2 entries; move_freelist_head rotates the list to the entry it
    # stopped at (0x1002), and nothing is taken.
    snap = build_snapshot(series, [M, U, R], free=FAST_LIST)
    r = replayed(snap, ("dd-300", fast_search(0x1200, 0x1600, 2, 0)))
    assert r.report.fast_searches_resolved == 1 and r.report.isolated_pages == 0
    assert r.alloc.free_list(0, 0, M) == [0x1002, 0x1000, 0x1010, 0x1008]
    # Every entry scanned (a limit of 16 or more): the list is as it was.
    r = replayed(snap, ("dd-300", fast_search(0x1200, 0x1600, 4, 0)))
    assert r.alloc.free_list(0, 0, M) == [p for p, _, _ in FAST_LIST]
    # 3 entries and nothing taken: no limit stops there. Not worked out.
    r = replayed(snap, ("dd-300", fast_search(0x1200, 0x1600, 3, 0)))
    assert r.report.fast_searches_resolved == 0
    assert r.alloc.free_list(0, 0, M) == [p for p, _, _ in FAST_LIST]


@pytest.mark.parametrize("series", ["6.1", "6.12", "7.2"])
def test_a_drain_that_did_not_come_shows_thps_min_free_kbytes(series):
    # No setup_wmarks events. The free brings count to 8 = pcp->high: the
    # model foresees a drain, the kernel drains nothing. THP's
    # set_recommended_min_free_kbytes (khugepaged.c 6.1 L2538) would give
    # min(11 pageblocks, nr_free_buffer_pages / 20) = (1536 - 30) // 20 = 75
    # pages: min 75, low 75 + 75 // 4 = 93, and zone_pcp_update's
    # zone_highsize makes the pcp 93 (6.1 pcp->high, 6.7+ high_min): the
    # page stays. Taken as that raise, with every zone's watermarks.
    fields = {} if series == "6.1" else {"high_min": 8, "high_max": 400}
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 9, U)], pcp={(0, M): M7},
                          batch=2, high=8, watermarks=(20, 25, 30), pcp_fields=fields)
    r = replayed(snap, ("rm-10", freed(F)))
    z = r.alloc.zones[0]
    assert r.report.inferred_watermarks == 1 and r.report.drains == 1
    assert (z.watermarks["min"], z.watermarks["low"]) == (75, 93)
    assert (z.pcp[0].high if series == "6.1" else z.pcp[0].high_min) == 93
    # The same with 75 free pages or fewer: the kernel allocates from a
    # zone the raise would leave below its min watermark. Not THP's.
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 6, U)], pcp={(0, M): M7},
                          batch=2, high=8, watermarks=(20, 25, 30), pcp_fields=fields)
    r = replayed(snap, ("rm-10", freed(F)))
    assert r.report.inferred_watermarks == 0 and r.alloc.zones[0].watermarks["min"] == 20


@pytest.mark.parametrize("series", ["6.1", "7.2"])
def test_blocks_between_a_refills_takes_are_compactions_when_it_is_at_work(series):
    # The order-0 MOVABLE list is 0x1000, 0x1002, ... 0x100a. The kernel's
    # refill takes 0x1004 then 0x1008: rmqueue_bulk takes list heads one
    # after another, so 0x1006 was not between them on its list. A
    # compaction range traced before (compaction at work, its isolation
    # untraced): 0x1006 is its, isolated; the list was rotated to 0x1004.
    free = [(p, 0, M) for p in range(0x1000, 0x100c, 2)]
    snap = build_snapshot(series, [M, U, R], free=free)
    takes = [("dd-304", zl(0x1004, M)), ("dd-304", zl(0x1008, M)), ("dd-304", alloc_line(0x1004))]
    r = replayed(snap, ("kcompactd0-30", isolated_range(0x1200, 0x1210, 16, 0)), *takes)
    assert r.report.contradictions["isolated_untraced_between_takes"] == 1
    assert not r.alloc.is_free(0x1006) and r.report.inferred_rotations == 1
    assert r.alloc.free_list(0, 0, M) == [0x100a, 0x1000, 0x1002]
    # With no sign of compaction the model's list order is what was wrong:
    # nothing is isolated.
    r = replayed(snap, *takes)
    assert r.alloc.is_free(0x1006) and not r.report.contradictions["isolated_untraced_between_takes"]


def test_setup_per_zone_wmarks_keeps_the_kernels_scale_factor():
    # __setup_per_zone_wmarks (6.12 L6116): low - min = max(min >> 2,
    # managed * watermark_scale_factor / 10000). The snapshot's 600 - 400
    # = 200 > 400 >> 2 shows a factor of 20 on 100,000 pages. A min of
    # 8,000 makes min >> 2 the larger term (2,000), which hides the factor;
    # set back to a min of 400, the gap is the factor's 200 again.
    a = build("6.12", [M, U, R], watermarks=(400, 600, 800), managed=100000)
    z = a.zones[0]
    a.setup_per_zone_wmarks(8000)
    assert (z.watermarks["min"], z.watermarks["low"]) == (8000, 10000)
    a.setup_per_zone_wmarks(400)
    assert (z.watermarks["min"], z.watermarks["low"], z.watermarks["high"]) == (400, 600, 800)


def test_replay_marks_a_range_the_model_cannot_explain():
    # nr_taken 5 of a range holding one free order-0 page: no walk takes
    # 5 pages. Nothing is taken; the pageblock is marked isolated untraced
    # (a compaction window) and the event counted. (Direct compaction, in
    # the allocating task: kcompactd's own events mark windows anyway.)
    snap = build_snapshot("7.2", [M, U, R], free=[(0x1100, 0, M)])
    r = replayed(snap, ("sh-125", isolated_range(0x1100, 0x1108, 8, 5)))
    assert r.alloc.is_free(0x1100)
    assert r.report.contradictions == {"isolated_range_not_in_model": 1}
    assert [w[0] for w in r.report.windows] == ["compaction"]


@pytest.mark.parametrize("start,end", [(0x1100, 0x10ff), (0x1000, 0x1000 + (1 << 20)),
                                       (0x900000, 0x900010)])
def test_replay_refuses_a_range_of_no_pageblock(start, end):
    # An end before the start, a range wider than a pageblock's largest
    # block (isolate_freepages_block scans one pageblock), a range in no
    # zone: counted, nothing taken, and no walk over a million pages.
    snap = build_snapshot("6.1", [M, U, R], free=[(0x1100, 0, M)])
    r = replayed(snap, ("kcompactd0-30", isolated_range(start, end, 8, 1)))
    assert r.alloc.is_free(0x1100)
    assert r.report.contradictions == {"isolated_range_not_in_model": 1}


def test_replay_leaves_the_range_to_the_isolate_kprobes():
    # With the __isolate_free_page kprobes in the trace they name the
    # blocks; the tracepoint after them changes nothing more.
    snap = build_snapshot("6.1", [M, U, R], free=[(0x1200, 3, U), (0x1208, 3, U)])
    snap.kernel.vmemmap, snap.kernel.sizeof_page = VMEMMAP, SIZEOF_PAGE
    who = "kcompactd0-30"
    r = replayed(snap, (who, isolate(0x1200, 3)), (who, isolated(8)),
                 (who, isolated_range(0x1200, 0x1210, 16, 8)))
    assert not r.alloc.is_free(0x1200) and r.alloc.is_free(0x1208)
    assert r.report.isolated_pages == 8 and not r.report.contradictions


@pytest.mark.parametrize("series", ["6.12", "7.2"])
def test_replay_applies_new_watermarks_and_pcp_sizes(series):
    # setup_per_zone_wmarks (6.12 L6090) then zone_pcp_update ->
    # zone_set_pageset_high_and_batch (L5793) -> pageset_update (L5746):
    # every CPU's high_min, high_max and batch. The kretprobe event reads
    # them back from node_data[0]; DMA32 is zone 1.
    snap = build_snapshot(series, [M, U, R], free=[(0x1200, 9, U)], pcp={(0, M): M7}, batch=2,
                          high=20, pcp_fields={"high_min": 4, "high_max": 40})
    line = ("setup_wmarks: (min_free_kbytes_sysctl_handler+0x4c/0x60 <- setup_per_zone_wmarks) "
            "z1w0=0x100 z1w1=0x140 z1w2=0x180 z1w3=0x1c0 z1r0=0 z1r1=0 z1r2=7 z1r3=7 z1r4=7 "
            "z1_pageset_high_min=80 z1_pageset_high_max=400 z1_pageset_batch=8")
    r = replayed(snap, ("sysctl-9", line))
    z = r.alloc.zones[0]
    assert (z.watermarks["min"], z.watermarks["low"], z.watermarks["high"]) == (256, 320, 384)
    assert z.lowmem_reserve == [0, 0, 7, 7, 7]
    pcp = z.pcp[0]
    assert (pcp.high_min, pcp.high_max, pcp.batch) == (80, 400, 8)
    assert r.report.watermark_changes == 1


def _replay_without_kprobes(name):
    """A committed pressure recording replayed as a trace-cmd recording of
    the kmem events alone would be: every kprobe event dropped."""
    from pathlib import Path

    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.model.replay import replay

    fx = Fixture.load(Path(__file__).resolve().parents[2] / "fixtures" / "recordings" / f"{name}.json.gz")
    events = parse_lines(fx.trace).events
    kmem = [e for e in events if e.name.startswith("mm_")]
    return events, replay(fx.snapshot, kmem)


def test_new_watermarks_inferred_without_the_kprobe_event():
    # 7.2 pressure-compact turns THP on: start_stop_khugepaged ->
    # set_recommended_min_free_kbytes -> setup_per_zone_wmarks raised
    # DMA32's min from 660 to 5645 pages (its setup_wmarks event). Without
    # that event the kernel's next allocations from ZONE_DMA show DMA32
    # below its new watermark: one miss, then the model's marks follow.
    events, rep = _replay_without_kprobes("7.2-1cpu-pressure-compact")
    assert any(e.name == "setup_wmarks" and "z1w0=5645" in (e.gfp or "") for e in events)
    assert rep.inferred_watermarks >= 1
    assert rep.reasons["watermarks_untraced"] == 1
    assert rep.longest_miss_run <= 1
    assert rep.hits >= rep.allocations - 1


def test_silent_decay_pinned_by_the_free_before_without_the_kprobe_event():
    # 7.2 pressure-tmpfs without its decay_pcp_high events: the kernel
    # drains at count c where the free before, at c - 1, kept its pages, so
    # pcp->high was c (then raised to free_count + batch, nr_pcp_high).
    _, rep = _replay_without_kprobes("7.2-1cpu-pressure-tmpfs")
    assert rep.silent_decays >= 1
    assert 100.0 * rep.drains_exact / rep.drains >= 60.0
    assert rep.longest_miss_run <= 1
