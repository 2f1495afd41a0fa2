"""Lab tier: find_page by struct page address on a paused guest's snapshot,
the address computed by drgn's own pfn_to_page() on the same guest."""

import pytest

from buddyscope.lab.kernels import find_vmlinux
from buddyscope.lab.guest import Guest
from buddyscope.model.find import find_page
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
drgn = pytest.importorskip("drgn")


def test_a_struct_page_address_finds_the_page_drgn_names(lab_kernel):
    from drgn.helpers.linux.mm import pfn_to_page

    with Guest.boot(lab_kernel, smp=2, mem_mib=512) as g:
        with open_source(SourceSpec(qmp=g.qmp_path, pause=g.pause_path, find_vmlinux=find_vmlinux)) as src:
            snap = src.snapshot()
            z = max(snap.zones, key=lambda z: z.managed_pages)
            order, lst = next((o, l) for o, a in enumerate(z.free_area) if o >= 1
                              for l in a.free_list if len(l) >= 2)
            pcp = next(l for p in z.pcp for l in p.lists if l)
            checked = []
            for pfn in (lst[1], lst[1] + 1, pcp[0]):
                addr = pfn_to_page(src.prog, pfn).value_()
                f = find_page(snap, hex(addr))
                checked.append((f.pfn, f.page, f.where))
                assert (f.pfn, f.page) == (pfn, addr)
    assert [w for _, _, w in checked] == ["free_list", "free_list", "pcp"]
