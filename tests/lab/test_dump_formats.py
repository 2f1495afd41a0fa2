"""Lab tier: one paused guest dumped in every vmcore format QEMU and
makedumpfile offer here (QEMU's kdump formats come out flattened; makedumpfile
``-d 31`` as kdump-tools runs it, each compression it was built with, ELF and
flattened), each read with ``--vmcore`` and giving the lists of the ELF dump
of the same pause, identically."""

import shutil

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab.dumps import dump_formats, makedumpfile_compressions
from buddyscope.lab.guest import Guest
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

STIR = "i=0; while [ $i -lt 200 ]; do head -c 12288 /dev/zero > /tmp/f$i; i=$((i+1)); done; rm -f /tmp/f*[02468]"


@pytest.fixture(scope="module")
def dumps(lab_kernel, tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    with Guest.boot(lab_kernel, smp=1, mem_mib=512) as g:
        g.run(STIR, check=True)
        files = dump_formats(g, d)
    yield files
    shutil.rmtree(d, ignore_errors=True)


def _read(path, vmlinux):
    with open_source(SourceSpec(vmcore=path, vmlinux=vmlinux)) as src:
        return src.snapshot().to_dict()


def test_every_format_gives_the_lists_of_the_elf_dump(dumps, lab_kernel):
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed (apt-get install makedumpfile; tests/run does)")
    # QEMU always has kdump-zlib; makedumpfile always zlib, and its ELF and
    # flattened outputs.
    assert {"elf", "qemu-kdump-zlib", "d31-zlib", "d31-elf", "d31-zlib-flattened"} <= dumps.keys()
    assert {f"d31-{c}" for c in makedumpfile_compressions()} <= dumps.keys()
    base = _read(dumps["elf"], lab_kernel.vmlinux)
    assert sum(len(l) for z in base["zones"] for a in z["free_area"] for l in a["free_list"]) > 0
    differ = []
    for name, path in sorted(dumps.items()):
        if name == "elf":
            continue
        got = _read(path, lab_kernel.vmlinux)
        assert got["capture"]["source"] == "vmcore" and got["capture"]["anomalies"] == []
        if (got["zones"], got["kernel"]) != (base["zones"], base["kernel"]):
            differ.append(name)
    assert differ == [], f"formats whose snapshot differs from the ELF dump's: {differ}"


def test_a_cut_short_flattened_dump_is_refused_in_one_line(dumps, tmp_path):
    cut = tmp_path / "cut"
    with open(dumps["qemu-kdump-zlib"], "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(BuddyscopeError, match="truncated or corrupt flattened dump|truncated flattened"):
        open_source(SourceSpec(vmcore=cut))
