"""Lab tier: buddyscope's drgn commands in drgn itself. drgn's CLI attaches
to a paused lab guest over QMP and runs a script that never imports
buddyscope: the commands are there because drgn loaded the plugin through
its entry point. Their output is checked against drgn's own helpers on the
same kernel (struct page addresses, free lists walked by drgn), and find's
struct page address and vmemmap in buddyscope's snapshot too."""

import json
import subprocess
import sys
import textwrap

import pytest

from buddyscope.lab.kernels import find_vmlinux
from buddyscope.lab.guest import Guest
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

SCRIPT = textwrap.dedent('''
    import contextlib, io, json, sys
    from drgn.commands import run_command
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import page_to_pfn, pfn_to_page
    from drgn.helpers.linux.mmzone import for_each_online_pgdat

    def run(cmd):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run_command(prog, cmd)
        return out.getvalue()

    loaded = "buddyscope.drgn_commands" in sys.modules
    pgdat = next(for_each_online_pgdat(prog))
    zone = next(z for z in pgdat.node_zones if z.name.string_() == b"DMA32")
    member = "buddy_list" if prog.type("struct page").has_member("buddy_list") else "lru"
    # drgn's own walk of DMA32 free_area[0..3].free_list[Movable]
    lists = {}
    for order in range(4):
        head = zone.free_area[order].free_list[1].address_of_()
        lists[order] = [page_to_pfn(p).value_() for p in list_for_each_entry("struct page", head, member)]
    order = max(lists, key=lambda o: len(lists[o]))
    pfn = lists[order][len(lists[order]) // 2]
    page = pfn_to_page(prog, pfn).value_()
    print(json.dumps({
        "loaded": loaded, "order": order, "pfn": pfn, "page": page, "lists": lists,
        "free": run(f"bs_free --zone DMA32 --order {order} --migratetype Movable"),
        "find": run(f"bs_find {pfn:#x}"),
        "find_addr": run(f"bs_find {page:#x}"),
        "pcp": run("bs_pcp --zone DMA32 --cpu 0"),
        "predict": run("bs_predict --order 0 --gfp GFP_KERNEL -n 2"),
        "crash_find": run(f"crash bs_find {pfn:#x}"),
    }))
''')


@pytest.fixture(scope="module")
def guest(lab_kernel):
    with Guest.boot(lab_kernel, smp=1, mem_mib=512) as g:
        g.run("mkdir -p /tmp/s; i=0; while [ $i -lt 200 ]; do head -c 12288 /dev/zero > /tmp/s/f$i; "
              "i=$((i+1)); done; rm -f /tmp/s/f*[13579]", check=True)
        yield g


def test_drgn_runs_buddyscope_commands_on_a_guest(guest, lab_kernel, tmp_path):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    with guest.paused():
        p = subprocess.run([sys.executable, "-m", "drgn", "--qemu", str(guest.qmp_path),
                            "-s", str(lab_kernel.vmlinux), "--no-default-symbols", str(script)],
                           capture_output=True, text=True, timeout=600, cwd="/")
        with open_source(SourceSpec(qmp=guest.qmp_path, find_vmlinux=find_vmlinux)) as src:
            snap = src.snapshot()
        got = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
        # `buddyscope find` on the same paused guest, as a user runs it.
        cli = subprocess.run([sys.executable, "-m", "buddyscope", "find", "--qmp", str(guest.qmp_path),
                              hex(got["page"]) if got else "0", "--json"],
                             capture_output=True, text=True, timeout=600, cwd="/")
    assert guest.status == "running"
    assert p.returncode == 0, p.stderr[-3000:]
    assert got["loaded"], "drgn did not load buddyscope's plugin"
    order, pfn, page = got["order"], got["pfn"], got["page"]
    # bs_free lists exactly drgn's own walk, head first.
    want = " ".join(f"{x:#x}" for x in got["lists"][str(order)])
    assert f"free_area[{order}].free_list[Movable] ({len(got['lists'][str(order)])}): {want}" in got["free"]
    # bs_find: the list, the position, and drgn's struct page address.
    pos = got["lists"][str(order)].index(pfn)
    assert f"struct page {page:#x}" in got["find"]
    assert f"on free_area[{order}].free_list[Movable] at position {pos} of" in got["find"]
    assert got["find_addr"] == got["find"]
    assert got["crash_find"] == got["find"]
    assert "lists[" in got["pcp"] and "count" in got["pcp"]
    assert got["predict"].count("pfn 0x") == 2
    # The snapshot records the same vmemmap: find from a saved snapshot
    # gives drgn's address too.
    from buddyscope.model.find import find_page

    assert snap.kernel.vmemmap + pfn * snap.kernel.sizeof_page == page
    assert cli.returncode == 0, cli.stderr
    found = json.loads(cli.stdout)
    pos = got["lists"][str(order)].index(pfn)
    assert (found["pfn"], found["page"], found["where"], found["order"], found["position"]) == (
        pfn, page, "free_list", order, pos)
    assert find_page(snap, pfn).page == page
