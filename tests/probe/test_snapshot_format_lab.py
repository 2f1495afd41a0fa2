"""Lab tier: a paused guest's snapshot, as the probe reads it, written by
``buddyscope snapshot --qmp -o`` (format 2, packed PFN lists) and in format 1
(lists of ints): both files give the probe's snapshot back, the model
predicts the same from the probe's state and from either file, and
``snapshot FILE --json`` prints the probe's lists."""

import json
import subprocess
import sys

import pytest

from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import find_vmlinux
from buddyscope.model._jsonfile import write_json
from buddyscope.model.allocator import Allocator
from buddyscope.model.predict import predict_request
from buddyscope.model.request import make_request
from buddyscope.model.snapshot import FORMAT, Snapshot
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

# Free every other page of a few MiB: lists with some length and order.
STIR = """
mkdir -p /tmp/stir
i=0; while [ $i -lt 1500 ]; do head -c 12288 /dev/zero > /tmp/stir/f$i; i=$((i+1)); done
rm -f /tmp/stir/f*[13579]
"""


def _content(snap):
    d = snap.to_dict()
    d.pop("format")
    return d


def _outcomes(snap, order, gfp):
    a = Allocator(snap)
    return [(o.pfn, o.zone, o.kind, o.events, o.refill)
            for o in predict_request(a, make_request(a, order, 0, gfp=gfp), 200)]


def test_both_formats_hold_the_probes_snapshot(lab_kernel, tmp_path):
    with Guest.boot(lab_kernel, smp=2, mem_mib=512) as g:
        g.run(STIR, check=True)
        with g.paused():
            with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=g.qmp_path,
                                        pause=g.pause_path)) as src:
                probed = src.snapshot()
            # The CLI's writer, on the same paused state.
            packed = tmp_path / "s.json.gz"
            p = subprocess.run([sys.executable, "-m", "buddyscope", "snapshot", "--qmp", str(g.qmp_path),
                                "--pause", str(g.pause_path), "--vmlinux", str(lab_kernel.vmlinux),
                                "-o", str(packed)],
                               capture_output=True, text=True, cwd="/", timeout=300)
            assert p.returncode == 0, p.stderr
    assert probed.capture.consistent
    plain = tmp_path / "s1.json.gz"
    write_json(plain, {**probed.to_dict(), "format": 1})
    new, old = Snapshot.load(packed), Snapshot.load(plain)
    assert (new.format, old.format) == (FORMAT, 1)
    entries = sum(len(l) for z in new.zones for a in z.free_area for l in a.free_list)
    assert entries > 200
    # Everything but when and how long the read took is the probe's.
    for d in (want := _content(probed), got := _content(new)):
        d["capture"].pop("time"), d["capture"].pop("read_seconds")
    assert got == want
    assert _content(old) == _content(probed)
    for order, gfp in ((0, "GFP_KERNEL"), (2, "GFP_KERNEL|__GFP_COMP"), (9, "GFP_TRANSHUGE")):
        assert _outcomes(new, order, gfp) == _outcomes(probed, order, gfp) == _outcomes(old, order, gfp)
    p = subprocess.run([sys.executable, "-m", "buddyscope", "snapshot", str(packed), "--json"],
                       capture_output=True, text=True, cwd="/", timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout) == new.to_dict()
    assert json.loads(p.stdout)["zones"] == want["zones"]
