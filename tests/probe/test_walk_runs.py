"""walk_list against the node-by-node walk (_walk_checked) on lists laid out
in runs (page after page, every other page, backwards), across chunks, and
with any one word of the memory changed: the run checks must give exactly
what the checked walk gives, PFNs and anomalies. Memory laid out like
x86-64 struct page, as in test_walk_list.py."""

import struct

import drgn
from hypothesis import given, settings
from hypothesis import strategies as st

from buddyscope.probe.pagemap import PageMap, _walk_checked, _walk_fast, walk_list

VMEMMAP = 0xFFFFEA0000000000
SIZE = 64
LINK = 8
PRIVATE = 40
HEAD = 0xFFFF888000100000
CHUNK = 4096
NCHUNKS = 3


def node(pfn):
    return VMEMMAP + pfn * SIZE + LINK


def layout(pfns, order):
    """Chunks 0..NCHUNKS-1 with *pfns* linked in that order after HEAD."""
    data = bytearray(SIZE * CHUNK * NCHUNKS)
    nodes = [node(p) for p in pfns]
    for i, p in enumerate(pfns):
        nxt = nodes[i + 1] if i + 1 < len(pfns) else HEAD
        prev = nodes[i - 1] if i else HEAD
        struct.pack_into("<QQ", data, p * SIZE + LINK, nxt, prev)
        struct.pack_into("<Q", data, p * SIZE + PRIVATE, order)
    return data


class Unmapped:
    """The memory of a chunk that faulted: every read faults."""

    def read(self, address, size):
        raise drgn.FaultError("could not read memory", address)

    def read_u64(self, address):
        raise drgn.FaultError("could not read memory", address)


def pagemap(data, faulted=()):
    pm = PageMap(prog=Unmapped(), vmemmap=VMEMMAP, sizeof_page=SIZE)
    for c in range(NCHUNKS):
        pm.chunks[c] = None if c in faulted else bytes(data[c * SIZE * CHUNK:(c + 1) * SIZE * CHUNK])
    return pm


def both(data, first, order, bound=20_000, faulted=()):
    out = []
    for walk in (walk_list, _walk_checked):
        anomalies = []
        pfns = walk(pagemap(data, faulted), HEAD, first, LINK, bound, "l", anomalies,
                    order=order, private_offset=PRIVATE)
        out.append((list(pfns), [(a.kind, a.where, a.detail) for a in anomalies]))
    return out


@st.composite
def run_lists(draw):
    """Distinct PFNs in runs of a constant stride (what a fragmented zone's
    lists are made of), with jumps between runs."""
    pfns, seen = [], set()
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, CHUNK * NCHUNKS - 1))
        step = draw(st.sampled_from([1, 2, -2, -1, 3, 64, -5]))
        for i in range(draw(st.integers(1, 3000))):
            p = start + i * step
            if not 0 <= p < CHUNK * NCHUNKS or p in seen:
                break
            seen.add(p)
            pfns.append(p)
    return pfns


def test_runs_across_chunks_both_ways():
    for pfns in (list(range(10, 3 * CHUNK - 10, 2)), list(range(3 * CHUNK - 1, 0, -2)),
                 list(range(0, 3 * CHUNK)), [5, 9000, 7, 9002, 11]):
        data = layout(pfns, 0)
        fast, checked = both(data, node(pfns[0]), 0)
        assert fast == checked == (pfns, [])
        # ... and by the run checks themselves, not by falling back to the
        # node-by-node walk (which would give the same, at its old speed).
        runs = _walk_fast(pagemap(data), HEAD, node(pfns[0]), LINK, 20_000, 0, PRIVATE)
        assert runs is not None and list(runs) == pfns


def test_a_head_placed_like_a_page_is_left_to_the_checked_walk():
    # A list head lying in the memory map at a node's address would let a
    # run take it for a page: the fast walk declines, the checked one walks.
    pfns = list(range(100, 200))
    head = node(50)
    data = layout(pfns, 0)
    struct.pack_into("<Q", data, pfns[-1] * SIZE + LINK, head)
    struct.pack_into("<Q", data, pfns[0] * SIZE + LINK + 8, head)
    assert _walk_fast(pagemap(data), head, node(pfns[0]), LINK, 20_000, 0, PRIVATE) is None
    anomalies = []
    got = walk_list(pagemap(data), head, node(pfns[0]), LINK, 20_000, "l", anomalies,
                    order=0, private_offset=PRIVATE)
    assert list(got) == pfns and anomalies == []


@settings(max_examples=300, deadline=None)
@given(run_lists(), st.integers(0, 10), st.data())
def test_one_word_changed_gives_what_the_checked_walk_gives(pfns, order, data):
    mem = layout(pfns, order)
    # Change one word of one listed page (next, prev or private) to another
    # node, a stray address, the head or another order.
    victim = data.draw(st.sampled_from(pfns))
    field = data.draw(st.sampled_from([LINK, LINK + 8, PRIVATE]))
    other = data.draw(st.sampled_from(pfns))
    value = data.draw(st.sampled_from([node(other), node(other) + 8, HEAD, 0, order + 1,
                                       node(CHUNK * NCHUNKS + 5), VMEMMAP - 64 + LINK]))
    struct.pack_into("<Q", mem, victim * SIZE + field, value)
    bound = data.draw(st.sampled_from([20_000, len(pfns), max(1, len(pfns) - 1)]))
    faulted = data.draw(st.sampled_from([(), (1,)]))
    fast, checked = both(mem, node(pfns[0]), order, bound, faulted)
    assert fast == checked


@settings(max_examples=100, deadline=None)
@given(run_lists())
def test_pcp_lists_have_no_order_to_check(pfns):
    mem = layout(pfns, 7)  # private is not looked at without an order
    fast, checked = both(mem, node(pfns[0]), None)
    assert fast == checked == (pfns, [])


def test_a_link_into_the_middle_of_a_page_is_not_taken_for_it():
    # a -> b + 16 -> c, and c points back to b + 16: inside page b, whose
    # own words look right (prev is a, the order is right), so only the
    # link's offset in the page tells it apart.
    pfns = [100, 102, 104]
    mem = layout(pfns, 0)
    struct.pack_into("<Q", mem, 100 * SIZE + LINK, node(102) + 16)
    struct.pack_into("<Q", mem, 104 * SIZE + LINK + 8, node(102) + 16)
    fast, checked = both(mem, node(100), 0)
    assert fast == checked
    assert checked[1][0][0] == "bad_link" and "is not a struct page" in checked[1][0][2]
