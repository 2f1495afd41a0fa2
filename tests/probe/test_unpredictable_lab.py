"""Lab tier: what makes exact prediction impossible, read from the kernel.
A guest booted with ``page_alloc.shuffle=1`` (its own sysfs says the
parameter is on) gives a snapshot that says so, and ``predict`` and
``replay``-style output warn; the same kernel booted without it says
nothing."""

import json

import pytest

from buddyscope.lab.kernels import find_vmlinux
from buddyscope import cli
from buddyscope.lab.guest import Guest
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")


def _config_has(kernel, option):
    return f"{option}=y" in (kernel.directory / "config").read_text(errors="replace")


@pytest.mark.parametrize("append", ["page_alloc.shuffle=1", ""], ids=["shuffle", "no-shuffle"])
def test_the_snapshot_says_whether_the_free_lists_are_shuffled(lab_kernel, append, tmp_path, capsys):
    with Guest.boot(lab_kernel, smp=1, mem_mib=512, append=append) as g:
        param = g.run("cat /sys/module/page_alloc/parameters/shuffle 2>/dev/null || echo none").text.strip()
        with open_source(SourceSpec(qmp=g.qmp_path, pause=g.pause_path, find_vmlinux=find_vmlinux)) as src:
            snap = src.snapshot()
        out = tmp_path / "snap.json"
        assert cli.main(["snapshot", "--qmp", str(g.qmp_path), "--pause", str(g.pause_path),
                         "-o", str(out)]) == 0
    if append and _config_has(lab_kernel, "CONFIG_SHUFFLE_PAGE_ALLOCATOR"):
        assert param == "Y"
    shuffled = param == "Y"
    assert ("page_alloc.shuffle" in snap.kernel.unpredictable) == shuffled
    assert ("page_alloc.shuffle" in json.loads(out.read_text())["kernel"]["unpredictable"]) == shuffled
    # No balloon and no guard pages in a lab guest.
    assert set(snap.kernel.unpredictable) <= {"page_alloc.shuffle"}

    capsys.readouterr()
    assert cli.main(["predict", str(out), "--order", "0", "--migratetype", "Movable"]) == 0
    text = capsys.readouterr().out
    assert ("WARNING: exact prediction is off: free-list shuffling is on" in text) == shuffled
    assert cli.main(["predict", str(out), "--order", "0", "--migratetype", "Movable", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["unpredictable"] == (["page_alloc.shuffle"] if shuffled else [])
