"""Default tier: model/boundary.py on committed recordings. Their snapshots
were taken paused, exactly before their traces, so every block-moving event
at the start of a trace is one the snapshot does not show yet; taken alone,
an allocation of a page the snapshot has allocated, or a free of one it has
free, is one it shows already."""

from pathlib import Path

import pytest

from buddyscope.model.boundary import ALLOCATED, BUDDY, PCP, _places, not_yet_shown, place_of
from buddyscope.model.events import MM_PAGE_ALLOC, MM_PAGE_FREE
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines

RECORDINGS = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "recordings").glob("*.json.gz"))
SOME = [p for p in RECORDINGS if "-2cpu-" in p.name and ("tmpfs" in p.name or "pipes" in p.name)]


@pytest.fixture(scope="module", params=SOME, ids=lambda p: p.name.split(".json")[0])
def recording(request):
    fx = Fixture.load(request.param)
    return fx.snapshot, parse_lines(fx.trace[:400]).events


def test_the_start_of_an_exact_trace_is_not_shown_yet(recording):
    snap, events = recording
    keep = not_yet_shown(snap, events)
    assert len(keep) == len(events) > 100
    # At most a handful fit no point (a page moved with no kmem event).
    assert sum(keep) >= 0.99 * len(events), sum(keep)


def test_allocations_of_pages_the_snapshot_has_free_are_kept(recording):
    snap, events = recording
    buddy, pcp = _places(snap)
    max_order = len(snap.zones[0].free_area) - 1
    allocs = [e for e in events if e.name == MM_PAGE_ALLOC and e.pfn is not None][:50]
    assert allocs
    for e in allocs:
        if place_of(e.pfn, buddy, pcp, max_order) in (BUDDY, PCP):
            assert not_yet_shown(snap, [e]) == [True]
        else:
            assert not_yet_shown(snap, [e]) == [False]  # already allocated where it was read


def test_a_free_of_a_page_the_snapshot_has_free_was_shown(recording):
    # A page free in the snapshot that the trace then frees (after taking it)
    # must not be freed twice: taken alone, that free is one the snapshot
    # already shows.
    snap, events = recording
    buddy, pcp = _places(snap)
    max_order = len(snap.zones[0].free_area) - 1
    frees = [e for e in events if e.name == MM_PAGE_FREE
             and place_of(e.pfn, buddy, pcp, max_order) != ALLOCATED]
    if not frees:
        pytest.skip("no free of a page that was free at the snapshot in the first 400 events")
    for e in frees:
        assert not_yet_shown(snap, [e]) == [False]
