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
    ev = _lines(
        ("sh", 10, 0, "mm_page_free_batched: page=x pfn=0x100 order=0"),
        ("sh", 10, 0, "mm_page_free: page=x pfn=0x200 order=0"),
        ("sh", 10, 0, "mm_page_free_batched: page=x pfn=0x101 order=0"),
        ("sh", 10, 1, "mm_page_free: page=x pfn=0x300 order=0"),
        ("sh", 10, 0, "mm_page_free: page=x pfn=0x400 order=0"),
    )
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
