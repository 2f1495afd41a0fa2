"""Lab tier: the exporter's fragmentation indices are the kernel's. A lab
guest prints its own debugfs ``extfrag/unusable_index`` and
``extfrag/extfrag_index`` and is paused the moment it is done; the
snapshot read over QMP in that pause, through ``buddyscope metrics``'
collector, must give the same numbers."""

import re

import pytest

from buddyscope.lab.kernels import find_vmlinux
from buddyscope.lab.guest import Guest
from buddyscope.metrics import make_registry, render
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

STIR = ("mkdir -p /tmp/s; i=0; while [ $i -lt 300 ]; do head -c 12288 /dev/zero > /tmp/s/f$i; "
        "i=$((i+1)); done; rm -f /tmp/s/f*[13579]")
# The lab's init mounts tracefs only; extfrag/ is in debugfs.
MOUNT = "mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug"
READ = "cat /sys/kernel/debug/extfrag/unusable_index; echo; cat /sys/kernel/debug/extfrag/extfrag_index"


def _kernel_rows(text):
    """{(zone, which): [thousandths per order]} from the two debugfs files."""
    unusable, extfrag = text.split("\n\n", 1)
    out = {}
    for which, part in (("unusable", unusable), ("extfrag", extfrag)):
        for m in re.finditer(r"^Node (\d+), zone\s+(\S+)\s+([-\d. ]+)$", part, re.M):
            out[(m.group(2), which)] = [round(float(x) * 1000) for x in m.group(3).split()]
    return out


def test_fragmentation_indices_match_the_kernels_debugfs(lab_kernel):
    from prometheus_client.parser import text_string_to_metric_families

    with Guest.boot(lab_kernel, smp=1, mem_mib=512) as g:
        g.run(STIR, check=True)
        g.run(MOUNT, check=True)
        with open_source(SourceSpec(qmp=g.qmp_path, find_vmlinux=find_vmlinux)) as src:
            with g.paused_after(READ, settle=0.5) as p:
                snap = src.snapshot()
        kernel = _kernel_rows(p.result.text)
    assert kernel, p.result.text
    ours = {}
    for fam in text_string_to_metric_families(render(make_registry(lambda: snap, "qmp")).decode()):
        which = {"buddyscope_unusable_free_ratio": "unusable",
                 "buddyscope_fragmentation_index": "extfrag"}.get(fam.name)
        for s in fam.samples if which else ():
            ours.setdefault((s.labels["zone"], which), {})[int(s.labels["order"])] = round(s.value * 1000)
    compared = 0
    for (zone, which), values in kernel.items():
        got = [ours[(zone, which)][o] for o in range(len(values))]
        assert got == values, (zone, which, got, values)
        compared += len(values)
    assert compared >= 2 * 11 * 2  # both indices, every order, DMA and DMA32
