"""The list walker on corrupt lists: the cycles, stray links and wrong orders
a paused real kernel does not produce on demand (style.md: a fake is only for
error paths). The memory here is laid out like x86-64 struct page."""

import struct

from buddyscope.probe.pagemap import PageMap, walk_list

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
