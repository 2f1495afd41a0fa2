"""The modules a guest loads to mount this machine's root over virtio-9p:
dependencies read from each module's .modinfo (as depmod does), loaded
dependencies first; on the cached kernels' real modules when there are any."""

import pytest

from buddyscope.errors import LabError
from buddyscope.lab import hostroot, kernels


def test_depends_come_from_modinfo():
    ko = b"\x7fELF...\0license=GPL\0depends=9pnet,netfs,fscache\0retpoline=Y\0name=9p\0"
    assert hostroot.modinfo_depends(ko) == ["9pnet", "netfs", "fscache"]
    assert hostroot.modinfo_depends(b"\0depends=\0name=virtio\0") == []
    assert hostroot.modinfo_depends(b"\0name=x\0") == []


def test_load_order_puts_dependencies_first_once():
    deps = {"9p": ["9pnet", "netfs"], "9pnet": [], "netfs": [], "9pnet_virtio": ["9pnet", "virtio"],
            "virtio": []}
    order = hostroot.load_order(deps, ["9pnet_virtio", "9p"])
    assert order == ["9pnet", "virtio", "9pnet_virtio", "netfs", "9p"]


def test_a_missing_dependency_or_cycle_is_named():
    with pytest.raises(LabError, match="module netfs is needed"):
        hostroot.load_order({"9p": ["netfs"]}, ["9p"])
    with pytest.raises(LabError, match="cycle"):
        hostroot.load_order({"a": ["b"], "b": ["a"]}, ["a"])


def test_chroot_command_quotes_and_drops_privileges():
    cmd = hostroot.chroot_command(["/bin/sh", "-c", "echo 'a b'"], user="nobody")
    assert cmd.startswith(f"chroot {hostroot.MOUNT} /usr/bin/setpriv --reuid=nobody")
    assert "'echo '\"'\"'a b'\"'\"''" in cmd


@pytest.mark.lab
def test_cached_modules_load_in_dependency_order(lab_kernel):
    paths = hostroot.share_modules(lab_kernel)
    names = [p.stem.replace("-", "_") for p in paths]
    assert names[-1] == "9p" and "9pnet_virtio" in names
    for i, p in enumerate(paths):
        for dep in hostroot.modinfo_depends(p.read_bytes()):
            assert dep in names[:i], (p.name, dep, names)
