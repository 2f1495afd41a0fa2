"""The replay's readings of kernel paths that the kmem events show only in
part, each checked against the kernel function it mirrors."""

from buddyscope.model.ftrace import parse_text
from buddyscope.model.stream import contig_chunks, contig_free_runs, frees_under_pcp_lock


def test_contig_chunks_follow_free_prepared_contig_range():
    # 7.2 mm/page_alloc.c free_prepared_contig_range: order = __ffs(pfn)
    # (MAX_PAGE_ORDER for pfn 0), capped by ilog2(nr_pages) and MAX_PAGE_ORDER.
    assert contig_chunks(0x5f18, 4, 10) == [(0x5f18, 2)]            # a split order-2 stack
    assert contig_chunks(0x5f19, 4, 10) == [(0x5f19, 0), (0x5f1a, 1), (0x5f1c, 0)]
    assert contig_chunks(0x1000, 3, 10) == [(0x1000, 1), (0x1002, 0)]
    assert contig_chunks(0, 2048, 10) == [(0, 10), (1024, 10)]
    assert contig_chunks(0x400, 0x800, 10) == [(0x400, 10), (0x800, 10)]


def _lines(*events):
    # MADE UP in the kernel's format: task, cpu, counter stamp, event.
    return parse_text("\n".join(
        f"{task:>16}-{pid:<5} [{cpu:03}] .....  {ts:>8}: {text}"
        for ts, (task, pid, cpu, text) in enumerate(events, 1)
    )).events


def test_a_split_order_2_block_freed_page_by_page_goes_back_as_one_block():
    ev = _lines(
        ("sh", 10, 0, "mm_page_alloc: page=x pfn=0x5f18 order=2 migratetype=0 gfp_flags=GFP_KERNEL"),
        ("kworker/0:0", 9, 0, "mm_page_free: page=x pfn=0x5f18 order=0"),
        ("kworker/0:0", 9, 0, "mm_page_free: page=x pfn=0x5f19 order=0"),
        ("kworker/0:0", 9, 0, "mm_page_free: page=x pfn=0x5f1a order=0"),
        ("kworker/0:0", 9, 0, "mm_page_free: page=x pfn=0x5f1b order=0"),
    )
    runs = contig_free_runs(ev, set(), 10)
    # Traced page by page (free_pages_prepare), committed at the last one.
    assert runs == {1: None, 2: None, 3: None, 4: [(0x5f18, 2)]}


def test_adjacent_pages_allocated_one_by_one_are_freed_one_by_one():
    # Page tables freed by RCU: order-0 allocations, order-0 frees.
    ev = _lines(
        ("sh", 10, 0, "mm_page_alloc: page=x pfn=0x80f6 order=0 migratetype=0 gfp_flags=GFP_KERNEL"),
        ("sh", 10, 0, "mm_page_alloc: page=x pfn=0x80f7 order=0 migratetype=0 gfp_flags=GFP_KERNEL"),
        ("rcu", 15, 0, "mm_page_free: page=x pfn=0x80f6 order=0"),
        ("rcu", 15, 0, "mm_page_free: page=x pfn=0x80f7 order=0"),
    )
    assert contig_free_runs(ev, set(), 10) == {}


def _flagged(*events):
    # MADE UP in the kernel's format, with the latency flags column.
    return parse_text("\n".join(
        f"{task:>16}-{pid:<5} [{cpu:03}] {flags}  {ts:>8}: {text}"
        for ts, (task, pid, cpu, flags, text) in enumerate(events, 1)
    )).events


def test_adjacent_untraced_pages_freed_in_softirq_are_freed_one_by_one():
    # RCU callbacks (softirq, "s" in the flags) freeing page tables
    # allocated before the snapshot: vfree in interrupt context defers to
    # the kworker (vfree_atomic), so no contiguous run is freed in softirq.
    ev = _flagged(
        ("agent", 110, 1, "..s2.", "mm_page_free: page=x pfn=0xa616 order=0"),
        ("agent", 110, 1, "..s2.", "mm_page_free: page=x pfn=0xa617 order=0"),
    )
    assert [e.in_interrupt for e in ev] == [True, True]
    assert contig_free_runs(ev, set(), 10) == {}


def test_a_softirq_free_does_not_break_the_kworkers_run():
    ev = _flagged(
        ("kworker/0:0", 9, 0, ".....", "mm_page_free: page=x pfn=0x5f18 order=0"),
        ("kworker/0:0", 9, 0, ".....", "mm_page_free: page=x pfn=0x5f19 order=0"),
        ("kworker/0:0", 9, 0, "..s1.", "mm_page_free: page=x pfn=0x8000 order=0"),
        ("kworker/0:0", 9, 0, ".....", "mm_page_free: page=x pfn=0x5f1a order=0"),
        ("kworker/0:0", 9, 0, ".....", "mm_page_free: page=x pfn=0x5f1b order=0"),
    )
    assert contig_free_runs(ev, set(), 10) == {0: None, 1: None, 3: None, 4: [(0x5f18, 2)]}


def test_frees_between_batched_frees_of_their_cpu_find_the_pcp_lock_taken():
    # 7.2 free_unref_folios holds the pcp lock across its commit loop, which
    # traces mm_page_free_batched; a softirq free in between fails
    # pcp_spin_trylock and goes to free_one_page.
    ev = _flagged(
        ("sh", 10, 0, "...2.", "mm_page_free_batched: page=x pfn=0x100 order=0"),
        ("sh", 10, 0, "..s2.", "mm_page_free: page=x pfn=0x200 order=0"),
        ("sh", 10, 0, "...2.", "mm_page_free_batched: page=x pfn=0x101 order=0"),
        ("sh", 10, 1, "..s..", "mm_page_free: page=x pfn=0x300 order=0"),
        ("sh", 10, 0, "..s2.", "mm_page_free: page=x pfn=0x400 order=0"),
        ("sh", 10, 0, ".....", "mm_page_free: page=x pfn=0x102 order=0"),
    )
    # The last softirq free came after the call had dropped the lock.
    assert frees_under_pcp_lock(ev, set()) == {1}


def test_every_path_step_of_every_7_2_recording_can_be_described():
    # keep_steps describes each predicted path; a late-traced allocation's
    # path once lacked the pcp list it came from.
    from pathlib import Path

    from buddyscope.model.fixture import Fixture
    from buddyscope.model.replay import replay

    recordings = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
    fx = Fixture.load(recordings / "7.2-1cpu-fallback.json.gz")
    rep = replay(fx.snapshot, parse_text("\n".join(fx.trace)).events, keep_steps=True)
    # Describing runs inside replay: reaching here means every step read.
    assert rep.allocations > 6000 and all(r.steps for r in rep.records)


def _recording(name):
    from pathlib import Path

    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.model.replay import Replayer
    from buddyscope.model.stream import deferred_frees

    fx = Fixture.load(Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
                      / f"{name}.json.gz")
    ev = parse_lines(fx.trace).events
    alloc = Replayer(fx.snapshot).alloc
    locked = frees_under_pcp_lock(ev, deferred_frees(ev)[0], alloc.zone_of)
    return ev, {ev[i].lineno for i in locked}, alloc


def test_the_pcp_lock_held_between_batched_frees_is_that_of_one_zone():
    # 7.2-2cpu-pressure-tmpfs, cpu 1: rm frees DMA pages (0x972, 0x22d, then
    # 0x973...) through free_unref_folios, which holds the DMA zone's pcp
    # lock; a softirq frees ten pages meanwhile (lines 13042-13051, "..s4.").
    # Nine are DMA32 pages: their trylock takes DMA32's pcp lock, and the
    # kernel hands them out of cpu 1's pcp list later, LIFO (lines
    # 18119-18126, 18516: no mm_page_alloc_zone_locked before them). The
    # tenth, 0x4f3, is a DMA page: its lock is taken, it goes to the buddy.
    ev, locked, alloc = _recording("7.2-2cpu-pressure-tmpfs")
    by_line = {e.lineno: e for e in ev}
    assert [by_line[n].flags for n in (13041, 13042, 13052)] == ["...2.", "..s4.", "...2."]
    assert alloc.zone_of(0x22d) is alloc.zone_of(0x4f3) is not alloc.zone_of(0x2688d)
    assert 13051 in locked and not locked & set(range(13042, 13051))
    taken = [by_line[n].pfn for n in range(18119, 18127)]
    assert taken == [by_line[n].pfn for n in range(13050, 13042, -1)]
    # On cpu 0, rm-709 frees DMA32 pages the same way; the softirq's ten
    # DMA32 frees there (lines 18587-18596) find the lock taken.
    assert set(range(18587, 18597)) <= locked


def test_a_softirq_after_a_refill_outside_the_pcp_lock_frees_to_the_pcp():
    # 7.2-1cpu-pipes-sockets: workload-241 refills its order-2 list (lines
    # 480-486, "d..3.": pin, pcp lock, zone lock); a softirq then frees 14
    # pages on its CPU ("Bs.." at lines 487-500: preempt count 0, so the
    # task had already dropped the pcp lock, which would count 2), and dd-242
    # takes them from the pcp list, LIFO (lines 508-520).
    ev, locked, _ = _recording("7.2-1cpu-pipes-sockets")
    by_line = {e.lineno: e for e in ev}
    assert by_line[486].flags == "d..3." and by_line[487].flags == ".Bs.."
    assert by_line[487].preempt_depth == 0
    assert not locked & set(range(487, 501))
    assert [by_line[n].pfn for n in range(508, 521)] == [by_line[n].pfn for n in range(500, 487, -1)]


def test_a_softirq_under_the_refills_pcp_lock_frees_to_the_buddy():
    # MADE UP in the kernel's format: the same refill, the softirq counting
    # the task's pin and pcp lock (2); a free of another zone's page takes
    # that zone's lock.
    ev = _flagged(
        ("sh", 10, 0, "d..3.", "mm_page_alloc_zone_locked: page=x pfn=0x8340 order=0 migratetype=0 percpu_refill=1"),
        ("sh", 10, 0, "..s2.", "mm_page_free: page=x pfn=0x8100 order=0"),
        ("sh", 10, 0, "..s2.", "mm_page_free: page=x pfn=0x100 order=0"),
        ("sh", 10, 0, ".....", "mm_page_alloc: page=x pfn=0x8340 order=0 migratetype=0 gfp_flags=GFP_KERNEL"),
        ("sh", 10, 0, "d..3.", "mm_page_alloc_zone_locked: page=x pfn=0x8350 order=0 migratetype=0 percpu_refill=1"),
        ("sh", 10, 0, "..s1.", "mm_page_free: page=x pfn=0x8101 order=0"),
        ("sh", 10, 0, ".....", "mm_page_alloc: page=x pfn=0x8350 order=0 migratetype=0 gfp_flags=GFP_KERNEL"),
    )
    zone = {True: "DMA", False: "DMA32"}
    zones = {z: object() for z in zone.values()}
    assert frees_under_pcp_lock(ev, set(), lambda pfn: zones[zone[pfn < 0x1000]]) == {1}
    assert frees_under_pcp_lock(ev, set()) == {1, 2}


def test_a_fallback_shows_the_requested_free_lists_empty():
    # 7.2-1cpu-pressure-tmpfs (recorded without compaction's kprobes): the
    # order-9 block at 0x4a00 was claimed MOVABLE (line 2714) and refills took
    # its pages from 0x4a00 up; kcompactd ran (line 4091) and took the rest as
    # migration targets with no event (line 5412 frees 0x4bd6, never traced
    # allocated). At line 9138 head-402's refill takes 0x4a3a-0x4a3f, then
    # falls back (extfrag, line 9145): __rmqueue falls back only after
    # __rmqueue_smallest found no MOVABLE block (7.2 L2483-L2514), so the
    # 445 pages of 0x4a40-0x4bff the model still held free were gone. With
    # them dropped there, the next two refills (lines 9424, 9610) are exact.
    from pathlib import Path

    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.model.replay import replay

    recordings = Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
    fx = Fixture.load(recordings / "7.2-1cpu-pressure-tmpfs.json.gz")
    ev = parse_lines(fx.trace).events
    by_line = {e.lineno: e for e in ev}
    assert by_line[9145].name == "mm_page_alloc_extfrag" and by_line[9145].alloc_migratetype == 1
    assert by_line[9137].pfn == 0x4a39 and by_line[9143].pfn == 0x4a3f
    rep = replay(fx.snapshot, ev, events_enabled=fx.provenance.get("events_enabled"))
    assert rep.contradictions["free_pages_gone_before_fallback"] == 445
    # The refill of line 9170 was predicted before its fallback showed the
    # pages gone: its set stays wrong; the two after it are exact.
    assert (rep.refills, rep.refills_exact) == (9, 8)


def test_a_softirq_right_after_a_tasks_pcp_free_reaches_the_pcp_as_traced():
    # 7.2-1cpu-fork-exec: sh-272 frees 0x5dff ("....." line 4342), then a
    # softirq frees 24 pages at preempt count 2 (".ls2.", lines 4343-4366):
    # as under the pcp lock free_frozen_page_commit takes after mm_page_free,
    # or under two other locks; the trace cannot tell. Here they reached the
    # pcp: workload-240 takes them LIFO (lines 4369-4372), and the replay,
    # which puts such frees on the pcp as traced, predicts each.
    from pathlib import Path

    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.model.replay import replay
    from buddyscope.model.stream import deferred_frees, frees_maybe_under_pcp_lock

    ev, locked_lines, alloc = _recording("7.2-1cpu-fork-exec")
    by_line = {e.lineno: e for e in ev}
    assert by_line[4342].flags == "....." and by_line[4343].flags == ".ls2."
    deferred = deferred_frees(ev)[0]
    maybe = frees_maybe_under_pcp_lock(ev, deferred, set(), alloc.zone_of,
                                       {o for o, _ in alloc.pindex})
    assert set(range(4343, 4367)) <= {ev[i].lineno for i in maybe}
    assert not locked_lines & set(range(4343, 4367))
    assert [by_line[n].pfn for n in range(4369, 4373)] == [by_line[n].pfn for n in range(4366, 4362, -1)]
    fx = Fixture.load(Path(__file__).resolve().parents[2] / "fixtures" / "recordings"
                      / "7.2-1cpu-fork-exec.json.gz")
    rep = replay(fx.snapshot, parse_lines(fx.trace).events)
    hits = {r.lineno: r.hit for r in rep.records}
    assert all(hits[n] for n in range(4369, 4373))
