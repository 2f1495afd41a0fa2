"""Choosing, caching and resolving lab kernels (no archive needed)."""

import json
import os

import pytest

from buddyscope.errors import LabError
from buddyscope.lab import kernels
from buddyscope.lab.guest import Guest, qemu_binary


class FakeTree:
    """Stands in for AptTree: `apt-cache show` stanzas as seen in each suite."""

    def __init__(self, stanzas):
        self.stanzas = stanzas
        self.downloaded = []

    def show(self, name):
        return self.stanzas.get(name)

    def package_names(self, pattern):
        import re
        return sorted(n for n in self.stanzas if re.fullmatch(pattern, n))

    def update(self):
        pass

    def download(self, packages, dest):
        self.downloaded += packages
        raise AssertionError("must not download")


def pkg(version="1", size="400000", depends=None):
    st = {"Version": version, "Installed-Size": size}
    if depends:
        st["Depends"] = depends
    return st


# What bookworm showed on 2026-11-24: the default is 6.1, and 6.12 is there too.
BOOKWORM = {
    "linux-image-amd64": pkg("6.1.192-2", "16", "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"),
    "linux-image-6.1.0-56-amd64-unsigned": pkg("6.1.192-2"),
    "linux-image-6.1.0-56-amd64-dbg": pkg("6.1.192-2"),
    "linux-image-6.12.57+deb12-amd64-unsigned": pkg("6.12.57-1~deb12u1"),
    "linux-image-6.12.57+deb12-amd64-dbg": pkg("6.12.57-1~deb12u1"),
    "linux-image-6.12.57+deb12-cloud-amd64-unsigned": pkg("6.12.57-1~deb12u1"),
}
# sid splits the image: linux-image-RELEASE is an empty package.
SID = {
    "linux-image-amd64": pkg("7.2.13-1", "16",
                             "linux-base-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-amd64 (= 7.2.13-1)"),
    "linux-image-7.2.13+deb14-amd64": pkg("7.2.13-1", "15"),
    "linux-binary-unsigned-7.2.13+deb14-amd64": pkg("7.2.13-1", "14300"),
    "linux-base-7.2.13+deb14-amd64": pkg("7.2.13-1", "900"),
    "linux-modules-7.2.13+deb14-amd64": pkg("7.2.13-1", "500000"),
    "linux-image-7.2.13+deb14-amd64-dbg": pkg("7.2.13-1"),
}


def test_series_of_release():
    assert kernels.series_of("5.10.0-46-amd64") == "5.10"
    assert kernels.series_of("6.12.118+deb13-amd64") == "6.12"
    with pytest.raises(LabError):
        kernels.series_of("amd64")


def test_default_kernel_of_the_suite_is_picked():
    assert kernels._pick_release(FakeTree(BOOKWORM), "bookworm", "6.1") == (
        "6.1.0-56-amd64", ["linux-image-6.1.0-56-amd64-unsigned"], "6.1.192-2")


def test_other_series_in_the_suite_takes_the_plain_flavour():
    assert kernels._pick_release(FakeTree(BOOKWORM), "bookworm", "6.12") == (
        "6.12.57+deb12-amd64", ["linux-image-6.12.57+deb12-amd64-unsigned"], "6.12.57-1~deb12u1")


def test_split_image_packages_of_sid():
    release, packages, version = kernels._pick_release(FakeTree(SID), "sid", "7.2")
    assert release == "7.2.13+deb14-amd64"
    assert packages == ["linux-binary-unsigned-7.2.13+deb14-amd64",
                        "linux-base-7.2.13+deb14-amd64",
                        "linux-modules-7.2.13+deb14-amd64"]


def test_series_absent_from_the_suite():
    with pytest.raises(LabError, match="no plain amd64 kernel of series 5.10"):
        kernels._pick_release(FakeTree(BOOKWORM), "bookworm", "5.10")


def test_missing_dbg_package_is_reported_before_any_download(tmp_path, monkeypatch):
    stanzas = dict(BOOKWORM)
    del stanzas["linux-image-6.1.0-56-amd64-dbg"]
    tree = FakeTree(stanzas)
    monkeypatch.setattr(kernels, "_suite_tree", lambda root, suite: tree)
    with pytest.raises(LabError, match="bookworm has no linux-image-6.1.0-56-amd64-dbg"):
        kernels.fetch("6.1", root=tmp_path)
    assert tree.downloaded == []


def test_unknown_series_and_suite():
    for spec in ("9.9", "6.6", "jammy", ""):
        with pytest.raises(LabError, match="unknown series"):
            kernels.fetch(spec)


def _fake_kernel(root, release, series, suite, version="1"):
    d = root / "kernels" / release
    d.mkdir(parents=True)
    for name in ("vmlinuz", "vmlinux"):
        (d / name).write_bytes(b"x" * 10)
    (d / "manifest.json").write_text(json.dumps(
        {"release": release, "series": series, "suite": suite, "version": version}))
    return d


def test_cache_listing_and_resolution(tmp_path):
    _fake_kernel(tmp_path, "6.1.0-56-amd64", "6.1", "bookworm")
    _fake_kernel(tmp_path, "5.10.0-46-amd64", "5.10", "bullseye")
    incomplete = _fake_kernel(tmp_path, "6.12.1-amd64", "6.12", "trixie")
    (incomplete / "vmlinux").unlink()
    assert [k.series for k in kernels.cached_kernels(tmp_path)] == ["5.10", "6.1"]
    assert kernels.resolve_kernel("6.1", tmp_path).release == "6.1.0-56-amd64"
    assert kernels.resolve_kernel("bullseye", tmp_path).series == "5.10"
    assert kernels.resolve_kernel("5.10.0-46-amd64", tmp_path).suite == "bullseye"
    with pytest.raises(LabError, match=r"no lab kernel for 7.2 .*buddyscope lab fetch 7.2"):
        kernels.resolve_kernel("7.2", tmp_path)
    with pytest.raises(LabError, match="unknown series"):
        kernels.resolve_kernel("4.19x", tmp_path)
    k = kernels.cached_kernels(tmp_path)[0]
    assert k.size() == 20 + (k.directory / "manifest.json").stat().st_size


def test_cache_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BUDDYSCOPE_CACHE", str(tmp_path / "c"))
    assert kernels.cache_root() == tmp_path / "c"
    monkeypatch.delenv("BUDDYSCOPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert kernels.cache_root() == tmp_path / "x" / "buddyscope"


def test_no_qemu_and_no_busybox(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("BUDDYSCOPE_BUSYBOX", str(tmp_path / "none"))
    with pytest.raises(LabError, match="no qemu-system-x86_64 .*qemu-system-x86"):
        qemu_binary()
    with pytest.raises(LabError, match="no static busybox"):
        kernels.find_busybox(tmp_path)
    # Booting checks both before starting anything.
    _fake_kernel(tmp_path, "6.1.0-56-amd64", "6.1", "bookworm")
    with pytest.raises(LabError, match="no qemu-system-x86_64"):
        Guest.boot(kernels.resolve_kernel("6.1", tmp_path))


def test_a_dynamic_binary_is_not_taken_for_busybox(monkeypatch, tmp_path):
    import sys
    monkeypatch.setenv("BUDDYSCOPE_BUSYBOX", os.path.realpath(sys.executable))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LabError, match="no static busybox"):
        kernels.find_busybox(tmp_path)
