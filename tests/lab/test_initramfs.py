"""The initramfs the lab writes, read back by our reader and by GNU cpio."""

import gzip
import shutil
import stat
import subprocess

import pytest

from buddyscope.errors import LabError
from buddyscope.lab.initramfs import CpioEntry, build_initramfs, read_cpio, write_cpio


def test_newc_round_trip_keeps_names_modes_data_and_devices():
    entries = [
        CpioEntry("bin", stat.S_IFDIR | 0o755),
        CpioEntry("bin/x", stat.S_IFREG | 0o755, b"abc"),  # data needs padding
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"x"),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("empty", stat.S_IFREG | 0o644, b""),
    ]
    blob = write_cpio(entries)
    assert len(blob) % 4 == 0
    assert read_cpio(blob) == entries


def test_garbage_is_refused():
    with pytest.raises(LabError, match="not a newc cpio"):
        read_cpio(b"0707070000")


@pytest.fixture
def fake_busybox(tmp_path):
    p = tmp_path / "busybox"
    p.write_bytes(b"\x7fELF-not-really-busybox" * 100)
    return p


def test_initramfs_holds_init_agent_busybox_console_and_module(tmp_path, fake_busybox):
    ko = tmp_path / "qemu_fw_cfg.ko"
    ko.write_bytes(b"module-bytes")
    blob = build_initramfs(fake_busybox, ko)
    assert blob[:2] == b"\x1f\x8b"
    got = {e.name: e for e in read_cpio(blob)}
    assert got["bin/busybox"].data == fake_busybox.read_bytes()
    assert got["bin/busybox"].mode & 0o111
    assert got["init"].data.startswith(b"#!/bin/busybox sh\n")
    assert b"insmod /lib/modules/qemu_fw_cfg.ko" in got["init"].data
    assert b"mount -t tracefs" in got["init"].data
    assert got["bin/agent"].data.startswith(b"#!/bin/sh\n")
    assert got["lib/modules/qemu_fw_cfg.ko"].data == b"module-bytes"
    assert got["dev/console"].kind == "char" and got["dev/console"].rdev == (5, 1)
    assert got["bin/sh"].kind == "symlink" and got["bin/sh"].data == b"busybox"
    # Built-in fw_cfg: no module in the archive.
    assert "lib/modules/qemu_fw_cfg.ko" not in {e.name for e in read_cpio(build_initramfs(fake_busybox))}


def test_initramfs_is_reproducible(fake_busybox):
    assert build_initramfs(fake_busybox) == build_initramfs(fake_busybox)


@pytest.mark.skipif(not shutil.which("cpio"), reason="needs GNU cpio")
def test_gnu_cpio_lists_the_same_members(tmp_path, fake_busybox):
    blob = gzip.decompress(build_initramfs(fake_busybox))
    listed = subprocess.run(["cpio", "-it", "--quiet"], input=blob,
                            capture_output=True, check=True).stdout.decode().split()
    assert listed == [e.name for e in read_cpio(blob)]
    assert {"init", "bin/agent", "bin/busybox", "dev/console"} <= set(listed)
