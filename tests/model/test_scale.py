"""Loading a snapshot's free lists a whole list at a time gives the model
state that adding block by block gives (``Allocator._add``), on the real
committed snapshots, also when the probe listed a block twice; and a model
whose lists go into its dicts as they are first used (``Allocator._link``)
predicts and replays as one that has them all from the start."""

import copy
from pathlib import Path

import pytest

from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.predict import predict_request
from buddyscope.model.replay import Replayer
from buddyscope.model.request import make_request
from buddyscope.model.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"
RECORDINGS = FIXTURES.parent / "recordings"


class _OneByOne(Allocator):
    """The reference: every block through ``_add``, as before bulk loading."""

    def _add_list(self, zi, pfns, order, mt):
        return False


def _state(a):
    a.link_all()
    return ([list(getattr(a, d).items()) for d in ("nxt", "prv", "buddy", "on_pcp", "pcp_mt")],
            [(z.nr_free, z.free_pages, z.cma_free, z.nr_free_highatomic) for z in a.zones])


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_bulk_load_is_one_by_one(series):
    snap = Snapshot.load(FIXTURES / f"{series}-2cpu-512m.json.gz")
    assert _state(Allocator(snap)) == _state(_OneByOne(snap))


def test_bulk_load_with_a_block_listed_twice():
    snap = copy.deepcopy(Snapshot.load(FIXTURES / "6.1-2cpu-512m.json.gz"))
    z = snap.zones[-1]
    o, mt, lst = next((o, mt, l) for o, a in enumerate(z.free_area)
                      for mt, l in enumerate(a.free_list) if len(l) >= 3)
    lst.append(lst[1])          # within one list
    later = [l for a in z.free_area[o + 1:] for l in a.free_list]
    later[0].append(lst[0])     # across lists: the first listing (this one) wins
    a = Allocator(snap)
    assert _state(a) == _state(_OneByOne(snap))
    assert a.free_list(len(snap.zones) - 1, o, mt) == lst[:-1]


def _contents(a):
    """The state, whatever order the lists went into the dicts."""
    a.link_all()
    return ([dict(getattr(a, d)) for d in ("nxt", "prv", "buddy", "on_pcp", "pcp_mt", "allocated")],
            [(z.nr_free, z.free_pages, z.cma_free, z.nr_free_highatomic) for z in a.zones])


def _outcomes(a, order, gfp, n):
    return [(o.pfn, o.zone, o.kind, o.events, o.refill)
            for o in predict_request(a, make_request(a, order, 0, gfp=gfp), n)]


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_lists_linked_on_first_use_predict_the_same(series):
    snap = Snapshot.load(FIXTURES / f"{series}-2cpu-512m.json.gz")
    for order, gfp in ((0, "GFP_KERNEL"), (3, "GFP_KERNEL|__GFP_COMP"), (9, "GFP_TRANSHUGE")):
        lazy, linked = Allocator(snap), Allocator(snap)
        linked.link_all()
        assert lazy._unlinked and not linked._unlinked
        assert _outcomes(lazy, order, gfp, 300) == _outcomes(linked, order, gfp, 300)
        # The same state once the lazy one has all its lists linked too.
        assert _contents(lazy) == _contents(linked)


@pytest.mark.parametrize("name", ["6.12-2cpu-fork-exec", "7.2-1cpu-pressure-tmpfs"])
def test_lists_linked_on_first_use_replay_the_same(name):
    fx = Fixture.load(RECORDINGS / f"{name}.json.gz")
    events = parse_lines(fx.trace).events
    enabled = fx.provenance.get("events_enabled")
    lazy = Replayer(fx.snapshot, events_enabled=enabled)
    linked = Replayer(fx.snapshot, events_enabled=enabled)
    linked.alloc.link_all()
    a, b = lazy.run(events).to_dict(), linked.run(events).to_dict()
    a.pop("seconds", None), b.pop("seconds", None)
    assert a == b
    assert _contents(lazy.alloc) == _contents(linked.alloc)


def test_a_pcp_page_also_on_a_free_list_stays_on_the_free_list():
    snap = copy.deepcopy(Snapshot.load(FIXTURES / "6.1-2cpu-512m.json.gz"))
    zi, z = next((i, z) for i, z in enumerate(snap.zones)
                 if any(l for p in z.pcp for l in p.lists or ()))
    pfn = next(p for c in z.pcp for l in c.lists for p in l)
    z.free_area[0].free_list[1].append(pfn)
    a = Allocator(snap)
    assert pfn not in a.on_pcp
    assert a.buddy[pfn] == (0, 1, zi) and not a._unlinked
    assert a.free_list(zi, 0, 1)[-1] == pfn


def _every_list(a, snap):
    return [a.free_list(zi, o, mt) for zi, z in enumerate(snap.zones)
            for o in range(a.nr_orders) for mt in range(len(snap.kernel.migratetypes))]


@pytest.mark.parametrize("series", ["5.10", "6.1", "6.12", "7.2"])
def test_a_view_of_the_lists_links_nothing_and_shows_what_linking_would(series):
    snap = Snapshot.load(FIXTURES / f"{series}-2cpu-512m.json.gz")
    lazy, linked = Allocator(snap), Allocator(snap)
    linked.link_all()
    unlinked = dict(lazy._unlinked)
    assert unlinked
    assert _every_list(lazy, snap) == _every_list(linked, snap)
    assert lazy._unlinked == unlinked and not lazy.buddy
    # After the model used some lists, the rest still as loaded.
    _outcomes(lazy, 3, "GFP_KERNEL|__GFP_COMP", 50)
    _outcomes(linked, 3, "GFP_KERNEL|__GFP_COMP", 50)
    assert len(lazy._unlinked) < len(unlinked)
    assert _every_list(lazy, snap) == _every_list(linked, snap)


def test_a_view_links_a_list_that_would_not_link_as_loaded():
    snap = copy.deepcopy(Snapshot.load(FIXTURES / "6.1-2cpu-512m.json.gz"))
    zi = len(snap.zones) - 1
    z = snap.zones[zi]
    o, mt, lst = next((o, mt, l) for o, a in enumerate(z.free_area)
                      for mt, l in enumerate(a.free_list) if len(l) >= 3)
    lst.append(lst[1])          # listed twice in one list
    (o2, mt2, other), = [(o2, mt2, l) for o2, a in enumerate(z.free_area[o + 1:], o + 1)
                         for mt2, l in enumerate(a.free_list) if l][:1]
    other.append(lst[0])        # and one of its PFNs on another list
    a = Allocator(snap)
    assert a.free_list(zi, o, mt) == lst[:-1]                  # linked, once each
    assert a.sentinel(zi, o, mt) not in a._unlinked
    assert a.free_list(zi, o2, mt2) == other[:-1]              # already on a linked list
    assert a.sentinel(zi, o2, mt2) not in a._unlinked


def test_a_pfn_on_two_lists_not_yet_linked_shows_on_both_as_counted():
    snap = copy.deepcopy(Snapshot.load(FIXTURES / "6.1-2cpu-512m.json.gz"))
    zi = len(snap.zones) - 1
    z = snap.zones[zi]
    lists = [(o, mt, l) for o, a in enumerate(z.free_area) for mt, l in enumerate(a.free_list) if l]
    (o, mt, lst), (o2, mt2, other) = lists[0], lists[-1]
    other.append(lst[0])
    a = Allocator(snap)
    assert a.free_list(zi, o2, mt2)[-1] == lst[0] and a.free_list(zi, o, mt)[0] == lst[0]
    assert a.zones[zi].nr_free[o2] == z.free_area[o2].nr_free + 1   # counted on both
    # Once the model links one, the other loses it.
    a._link(a.sentinel(zi, o, mt))
    assert a.free_list(zi, o2, mt2) == other[:-1]
