"""What the panels show, computed without a terminal, checked against the
fixtures' raw JSON and against the kernel's formulas worked by hand."""

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.load import load_recording
from buddyscope.model.replay import replay
from buddyscope.model.snapshot import Snapshot
from buddyscope.model.stepping import Stepper
from buddyscope.tui import views

from tuihelp import REC_61, SNAP_61, SNAP_72, SNAPSHOTS, raw


@pytest.mark.parametrize("path", sorted(SNAPSHOTS.glob("*.json.gz")), ids=lambda p: p.name[:4])
def test_zone_views_match_the_raw_snapshot(path):
    d = raw(path)
    snap = Snapshot.load(path)
    for zv, z in zip(views.zone_views(snap), d["zones"]):
        assert zv.name == z["name"]
        fa = zv.free_area
        for o, area in enumerate(z["free_area"]):
            assert fa.counts[o] == [len(lst) for lst in area["free_list"]]
            assert fa.nr_free[o] == area["nr_free"]
            assert fa.pages[o] == area["nr_free"] * 2 ** o
        assert [(c.cpu, c.count, c.high, c.batch) for c in zv.pcp_cpus] == \
            [(p["cpu"], p["count"], p["high"], p["batch"]) for p in z["pcp"]]
        heads = [(p["cpu"], i, len(lst), lst[0] if lst else None)
                 for p in z["pcp"] for i, lst in enumerate(p["lists"])]
        assert [(r.cpu, r.pindex, r.length, r.head) for r in zv.pcp_lists] == heads
        w = zv.watermarks
        assert w.free_pages == z["nr_free_pages"]
        assert [(n, v, b) for n, v, b in w.marks] == \
            [(n, v, v + z["watermark_boost"]) for n, v in z["watermarks"].items()]


def test_fragmentation_indices_by_hand():
    # mm/vmstat.c with 100 free order-0 pages and nothing else: an order-1
    # request would fail; __fragmentation_index = 1000 - (1000 + 100*1000/2)/100
    # = 490, unusable_free_index = (100 - 0) * 1000 / 100 = 1000.
    info = views.contig_page_info([100, 0, 0], 1)
    assert (info.free_pages, info.free_blocks_total, info.free_blocks_suitable) == (100, 100, 0)
    assert views.fragmentation_index(1, info) == 490
    assert views.unusable_free_index(1, info) == 1000
    # One order-2 block and 4 order-0 pages: order 2 succeeds (-1000), and
    # 4 of the 8 free pages are unusable for it.
    info = views.contig_page_info([4, 0, 1], 2)
    assert views.fragmentation_index(2, info) == -1000
    assert views.unusable_free_index(2, info) == 500
    # Nothing free: 1000 unusable, index 0.
    info = views.contig_page_info([0, 0, 0], 0)
    assert views.unusable_free_index(0, info) == 1000 and views.fragmentation_index(0, info) == 0


def test_fragmentation_rows_of_a_fixture():
    d = raw(SNAP_72)
    snap = Snapshot.load(SNAP_72)
    for z, zd in zip(snap.zones, d["zones"]):
        nr = [a["nr_free"] for a in zd["free_area"]]
        free = sum(n << o for o, n in enumerate(nr))
        for row in views.fragmentation_rows(z):
            small = sum(n << o for o, n in enumerate(nr) if o < row.order)
            assert row.unusable == (small * 1000 // free if free else 1000)
            assert row.extfrag == (-1000 if any(nr[row.order:]) else row.extfrag)


def test_pageblock_free_pages_match_the_free_lists():
    d = raw(SNAP_72)
    snap = Snapshot.load(SNAP_72)
    pbo = d["kernel"]["pageblock_order"]
    for z, zd in zip(snap.zones, d["zones"]):
        v = views.pageblock_view(snap, z)
        assert v.types == zd["pageblock_migratetypes"]
        free_pfns = {p + i for o, a in enumerate(zd["free_area"]) for lst in a["free_list"]
                     for p in lst for i in range(2 ** o)}
        base = zd["start_pfn"] >> pbo
        per_block = [0] * len(v.types)
        for pfn in free_pfns:
            per_block[(pfn >> pbo) - base] += 1
        assert v.free == per_block
        assert v.first_pfn == base << pbo


def test_the_model_state_at_load_is_the_snapshot():
    snap = Snapshot.load(SNAP_61)
    m = views.model_snapshot(Allocator(snap), snap)
    for a, b in zip(snap.zones, m.zones):
        assert [x.free_list for x in a.free_area] == [x.free_list for x in b.free_area]
        assert [p.lists for p in a.pcp] == [p.lists for p in b.pcp]
        assert [p.count for p in a.pcp] == [p.count for p in b.pcp]
        assert a.pageblock_migratetypes == b.pageblock_migratetypes


def test_prediction_rolls_the_model_back():
    from buddyscope.model.predict import predict

    snap = Snapshot.load(SNAP_61)
    alloc = Allocator(snap)
    req = views.parse_request("3", "GFP_KERNEL", "1", "4")
    assert (req.gfp, req.migratetype) == ("GFP_KERNEL", None)
    p = views.run_prediction(alloc, snap, req)
    want = predict(snap, 3, 4, gfp="GFP_KERNEL", cpu=1)
    assert [o.pfn for o in p.outcomes] == [o.pfn for o in want]
    # The same allocator predicts the same again: the trial was rolled back.
    again = views.run_prediction(alloc, snap, req)
    assert [o.pfn for o in again.outcomes] == [o.pfn for o in want]
    c = views.compare_view(p.before, p.after, 1)
    # Four order-3 blocks were handed out: the pages on the free lists and
    # the pcp lists together are 32 fewer (a refill only moves pages).
    pcp_before, pcp_after = sum(b for _, b, _ in c.pcp), sum(a for _, _, a in c.pcp)
    assert (c.free_pages[0] + pcp_before) - (c.free_pages[1] + pcp_after) == 4 * 8
    assert c.changed


@pytest.mark.parametrize("fields, message", [
    (("x", "Movable", "0", "1"), "order: not a number"),
    (("0", "", "0", "1"), "give a gfp mask"),
    (("0", "Movable", "-1", "1"), "cpu must be at least 0"),
    (("0", "Movable", "0", "0"), "count must be 1..1000"),
])
def test_bad_requests(fields, message):
    with pytest.raises(BuddyscopeError, match=message):
        views.parse_request(*fields)


def test_stepper_end_is_the_full_replay():
    fx = Fixture.load(REC_61)
    events = parse_lines(fx.trace).events
    want = replay(fx.snapshot, events)
    st = Stepper.from_recording(load_recording(REC_61))
    end = st.state_at(len(st))
    assert (end.report.hits, end.report.allocations) == (want.hits, want.allocations)
    assert st.miss_steps() == sorted(
        i + 1 for i, e in enumerate(events) for r in want.misses() if r.lineno == e.lineno
        and e.name == "mm_page_alloc")


def first_pcp_hit(st):
    """Event index and PFN of the first allocation the replay predicts
    exactly from a pcp list."""
    rec = next(r for r in st.state_at(len(st)).report.records if r.hit and r.path == "pcp")
    i = next(j for j, e in enumerate(st.events)
             if e.lineno == rec.lineno and e.name == "mm_page_alloc")
    return i, rec.actual_pfn


def test_stepper_steps_are_prefixes():
    st = Stepper.from_recording(load_recording(REC_61))
    i, pfn = first_pcp_hit(st)
    before, after, again = st.state_at(i), st.state_at(i + 1), st.state_at(i)
    # Before its event the page is on a pcp list and predicted; after, taken.
    assert pfn in before.alloc.on_pcp and before.next_predicted == pfn
    assert pfn not in after.alloc.on_pcp and after.last_record.actual_pfn == pfn
    assert after.report.allocations == before.report.allocations + 1
    # Going back rebuilds the same state.
    assert again.alloc.on_pcp == before.alloc.on_pcp
    assert st.next_alloc_step(i) == i + 1 and st.prev_alloc_step(st.next_alloc_step(i + 1)) == i + 1


def test_a_stepper_of_a_snapshot_with_no_events():
    st = Stepper(Snapshot.load(SNAP_61), [])
    s = st.state_at(5)
    assert s.step == 0 and s.next_event is None and s.report.allocations == 0


def test_prediction_carries_why_for_the_same_request():
    from buddyscope.model.why import explain

    snap = Snapshot.load(SNAP_61)
    alloc = Allocator(snap)
    req = views.parse_request("3", "GFP_KERNEL", "1", "1")
    p = views.run_prediction(alloc, snap, req)
    e = explain(snap, alloc.profile, 3, "GFP_KERNEL", 1, free_source="lists")
    assert p.why == f"why: {e.sentence}"
    # The prediction's first result comes from the zone why says serves it.
    assert e.attempts[-1].served.zone == p.outcomes[0].zone
