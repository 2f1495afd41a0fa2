"""Default tier: the vmcore format sniffing and makedumpfile's flattened form
reassembled (the layout of makedumpfile.h's struct makedumpfile_header and
makedumpfile_data_header; real flattened dumps are read in the lab tier,
tests/lab/test_dump_formats.py)."""

import struct

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.probe import dumpfile


def _flattened(records, end=True):
    head = b"makedumpfile".ljust(16, b"\0") + struct.pack(">qq", 1, 1)
    out = head.ljust(4096, b"\0")
    for offset, data in records:
        out += struct.pack(">qq", offset, len(data)) + data
    if end:
        out += struct.pack(">qq", -1, -1)
    return out


def test_records_land_at_their_offsets_in_any_order(tmp_path):
    src = tmp_path / "flat"
    src.write_bytes(_flattened([(8192, b"C" * 100), (0, b"KDUMP   " + b"A" * 8), (4096, b"B" * 10)]))
    assert dumpfile.dump_format(src) == dumpfile.FLATTENED
    out = dumpfile.unflatten(src, tmp_path)
    data = out.read_bytes()
    assert len(data) == 8192 + 100
    assert data[:16] == b"KDUMP   AAAAAAAA" and data[4096:4106] == b"B" * 10
    assert data[8192:] == b"C" * 100 and data[16:4096] == b"\0" * (4096 - 16)
    assert dumpfile.dump_format(out) == dumpfile.KDUMP
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat", "flat.kdump"]


@pytest.mark.parametrize("cut", [4096 + 8, 4096 + 16 + 50, None])
def test_a_cut_short_stream_is_refused_and_leaves_nothing(tmp_path, cut):
    full = _flattened([(0, b"x" * 100)], end=cut is not None)
    src = tmp_path / "flat"
    src.write_bytes(full[:cut] if cut else full)
    with pytest.raises(BuddyscopeError, match="truncated"):
        dumpfile.unflatten(src, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["flat"]


def test_not_a_vmcore_names_the_formats(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"hello world, not a dump")
    with pytest.raises(BuddyscopeError, match="neither ELF, kdump-compressed nor makedumpfile's flattened"):
        dumpfile.dump_format(f)


def test_the_kdump_header_machine_names_the_platform(tmp_path):
    drgn = pytest.importorskip("drgn")
    f = tmp_path / "k"
    # struct disk_dump_header as QEMU writes it: only utsname.machine set.
    head = bytearray(b"KDUMP   " + struct.pack("<i", 6) + b"\0" * 400)
    head[12 + 4 * 65:12 + 4 * 65 + 6] = b"x86_64"
    f.write_bytes(bytes(head))
    assert dumpfile.kdump_machine(f) == "x86_64"
    assert dumpfile.kdump_platform(f).arch == drgn.Architecture.X86_64
    head[12 + 4 * 65:12 + 4 * 65 + 6] = b"\0" * 6
    f.write_bytes(bytes(head))
    assert dumpfile.kdump_platform(f) is None
