"""The list walker on corrupt lists: the cycles, stray links and wrong orders
a paused real kernel does not produce on demand (style.md: a fake is only for
error paths). The memory here is laid out like x86-64 struct page."""

import struct

from buddyscope.probe.pagemap import PageMap, walk_list, walk_until_whole

VMEMMAP = 0xFFFFEA0000000000
SIZE = 64
LINK = 8      # offsetof(struct page, buddy_list)
PRIVATE = 40  # offsetof(struct page, private)
HEAD = 0xFFFF888000100000  # a list_head outside the vmemmap (in struct zone)


def node(pfn):
    return VMEMMAP + pfn * SIZE + LINK


def pagemap(links, private=None):
    """A PageMap whose chunk 0 holds pages with the given (next, prev) links."""
    data = bytearray(SIZE * 4096)
    for pfn, (nxt, prev) in links.items():
        struct.pack_into("<QQ", data, pfn * SIZE + LINK, nxt, prev)
        struct.pack_into("<Q", data, pfn * SIZE + PRIVATE, (private or {}).get(pfn, 0))
    pm = PageMap(prog=None, vmemmap=VMEMMAP, sizeof_page=SIZE)
    pm.chunks[0] = bytes(data)
    return pm


def walk(pm, first, bound=100, order=None):
    anomalies = []
    pfns = walk_list(pm, HEAD, first, LINK, bound, "test list", anomalies,
                     order=order, private_offset=PRIVATE)
    return list(pfns), [(a.kind, a.detail) for a in anomalies]


def test_a_good_list_in_order():
    pm = pagemap({8: (node(2), HEAD), 2: (node(5), node(8)), 5: (HEAD, node(2))})
    assert walk(pm, node(8)) == ([8, 2, 5], [])


def test_empty_list():
    assert walk(pagemap({}), HEAD) == ([], [])


def test_cycle_is_stopped_and_named():
    pm = pagemap({1: (node(2), HEAD), 2: (node(3), node(1)), 3: (node(1), node(2))})
    pfns, anomalies = walk(pm, node(1), bound=10)
    assert len(pfns) == 10
    assert anomalies[-1] == ("cycle", "stopped after 10 entries")


def test_long_list_hits_the_bound():
    links = {i: (node(i + 1), node(i - 1) if i else HEAD) for i in range(20)}
    pfns, anomalies = walk(pagemap(links), node(0), bound=5)
    assert pfns == [0, 1, 2, 3, 4] and anomalies == [("bound", "stopped after 5 entries")]


def test_link_that_is_not_a_struct_page():
    pm = pagemap({1: (node(2) + 3, HEAD)})
    pfns, anomalies = walk(pm, node(1))
    assert pfns == [1]
    assert anomalies[0][0] == "bad_link" and "is not a struct page" in anomalies[0][1]


def test_prev_that_does_not_point_back():
    pm = pagemap({1: (node(2), HEAD), 2: (HEAD, node(7))})
    pfns, anomalies = walk(pm, node(1))
    assert pfns == [1, 2]
    assert anomalies == [("bad_link", f"entry 1 (pfn 0x2): prev {node(7):#x} is not {node(1):#x}")]


def test_order_of_a_free_page_is_checked():
    pm = pagemap({4: (node(8), HEAD), 8: (HEAD, node(4))}, private={4: 2, 8: 3})
    pfns, anomalies = walk(pm, node(4), order=2)
    assert pfns == [4, 8]
    assert anomalies == [("not_buddy", "pfn 0x8: page->private 3 on the order-2 list")]


# -- a list that changes under the walk (a running kernel) --------------------

POISON2 = 0xDEAD000000000122  # LIST_POISON2 on x86-64: list_del's prev


def test_small_chunks_read_only_the_pages_the_walk_reaches():
    # A live pcp walk reads struct page 64 at a time (mmzone._FRESH_CHUNK_SHIFT).
    class Prog:
        reads = []

        def read(self, addr, size):
            self.reads.append((addr, size))
            data = bytearray(size)
            first = (addr - VMEMMAP) // SIZE
            for pfn, (nxt, prev) in {70: (node(3), HEAD), 3: (HEAD, node(70))}.items():
                if first <= pfn < first + size // SIZE:
                    struct.pack_into("<QQ", data, (pfn - first) * SIZE + LINK, nxt, prev)
            return bytes(data)

    prog = Prog()
    pm = PageMap(prog, VMEMMAP, SIZE, chunk_shift=6)
    assert walk(pm, node(70)) == ([70, 3], [])
    assert prog.reads == [(VMEMMAP + 64 * SIZE, 64 * SIZE), (VMEMMAP, 64 * SIZE)]


def _changing_list(states):
    """A walk of the list at HEAD whose pages are read afresh each time, and
    each time later: *states* are (head->next, links) the kernel had."""
    seen = iter(states)

    def walk_once(anomalies):
        first, links = next(seen)
        return walk_list(pagemap(links), HEAD, first, LINK, 100, "pcp", anomalies)
    return walk_once


def test_a_torn_walk_is_walked_again_until_whole():
    # Head read with 8 first; by the time page 8 is read it was taken off
    # (list_del: prev poisoned), and its next reused. Then the list is whole.
    torn = (node(8), {8: (0, POISON2), 2: (HEAD, HEAD)})
    whole = (node(2), {2: (node(5), HEAD), 5: (HEAD, node(2))})
    pfns, found, walks = walk_until_whole(_changing_list([torn, torn, whole]), rewalks=8)
    assert (list(pfns), found, walks) == ([2, 5], [], 3)


def test_a_walk_torn_every_time_is_kept_and_named():
    torn = (node(8), {8: (0, POISON2)})
    pfns, found, walks = walk_until_whole(_changing_list([torn] * 3), rewalks=2)
    assert walks == 3 and list(pfns) == [8]
    assert [a.kind for a in found] == ["bad_link", "bad_link"]


def test_a_whole_list_is_walked_once_and_a_paused_read_never_again():
    whole = (node(2), {2: (HEAD, HEAD)})
    assert walk_until_whole(_changing_list([whole]), rewalks=8)[2] == 1
    torn = (node(8), {8: (0, POISON2)})
    pfns, found, walks = walk_until_whole(_changing_list([torn]), rewalks=0)
    assert walks == 1 and found
