"""Loading a snapshot's free lists a whole list at a time gives the model
state that adding block by block gives (``Allocator._add``), on the real
committed snapshots, also when the probe listed a block twice."""

import copy
from pathlib import Path

import pytest

from buddyscope.model.allocator import Allocator
from buddyscope.model.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots"


class _OneByOne(Allocator):
    """The reference: every block through ``_add``, as before bulk loading."""

    def _add_list(self, zi, pfns, order, mt):
        return False


def _state(a):
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
