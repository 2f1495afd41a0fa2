"""
The host's root inside a guest
------------------------------

To run buddyscope *inside* a lab guest, against the guest's own
``/proc/kcore``, debug info and tracefs (what a user on a real host does), the
guest mounts this machine's root filesystem read-only over virtio-9p and
``chroot``s into it: the same Debian userland, the same Python environment,
the same cached ``-dbg`` vmlinux. What the guest writes goes to tmpfs.

The guest kernel needs the 9p and virtio modules of its own image package,
loaded from the initramfs in ``modules.dep`` order. :func:`share_modules`
extracts them into the kernel's cache directory (``modules/``) once, fetching
the image packages again for a kernel cached before they were kept.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

from buddyscope.errors import LabError
from buddyscope.lab.kernels import (
    Kernel,
    _decompress_module,
    _locked,
    _members,
    _suite_tree,
    cache_root,
)

__all__ = ("MOUNT", "TAG", "chroot_command", "mount_script", "qemu_share_args",
           "share_modules")

#: The 9p mount tag and where the guest mounts the share.
TAG = "hostroot"
MOUNT = "/host"

# Where the modules a virtio-9p root needs live in an image package; the
# dependencies among them come from modules.dep (netfs and fscache are 9p's
# dependencies from 5.17 on, one module since 6.6).
_MODULE_DIRS = ("kernel/fs/9p/", "kernel/net/9p/", "kernel/fs/netfs/",
                "kernel/fs/fscache/", "kernel/drivers/virtio/")
# The modules to load (by name) and the options that build them.
_ROOTS = (("virtio_pci", "CONFIG_VIRTIO_PCI"), ("9pnet_virtio", "CONFIG_NET_9P_VIRTIO"),
          ("9p", "CONFIG_9P_FS"))
_ORDER = "load-order"


def _strip_compression(name: str) -> str:
    return re.sub(r"\.ko\.(xz|zst|gz)$", ".ko", name)


def modinfo_depends(ko: bytes) -> list[str]:
    """The ``depends=`` of a module's ``.modinfo`` (what ``depmod`` reads):
    module names, ``-`` and ``_`` alike."""
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    if not m:
        return []
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d]


def load_order(depends: dict[str, list[str]], roots: Sequence[str]) -> list[str]:
    """*roots* and what they depend on (module name -> names), each after what
    it needs, as ``modprobe`` loads them."""
    order: list[str] = []

    def visit(mod: str, path: tuple[str, ...]) -> None:
        if mod in order:
            return
        if mod in path:
            raise LabError(f"module dependencies have a cycle through {mod}")
        if mod not in depends:
            raise LabError(f"module {mod} is needed ({' -> '.join(path)}) but was not extracted "
                           f"(looked in {', '.join(_MODULE_DIRS)})")
        for d in depends[mod]:
            visit(d, path + (mod,))
        order.append(mod)

    for root in roots:
        visit(root, ())
    return order


def _extract(debs: Iterable[Path], release: str, config: str, dest: Path) -> list[str]:
    """Extract the modules of :data:`_MODULE_DIRS` into *dest*; return the
    files to load, in order (relative to *dest*)."""
    r = re.escape(release)
    rx = re.compile(rf"(?:usr/)?lib/modules/{r}/(kernel/.+\.ko(?:\.xz|\.zst)?)")

    def want(name: str) -> str | None:
        m = rx.fullmatch(name)
        return m.group(1) if m and m.group(1).startswith(_MODULE_DIRS) else None

    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for deb in debs:
        for rel, tar, m in _members(deb, want):
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(out, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            _decompress_module(dest / _strip_compression(rel))
            rel = _strip_compression(rel)
            files[Path(rel).stem.replace("-", "_")] = rel
    depends = {name: modinfo_depends((dest / rel).read_bytes()) for name, rel in files.items()}
    # A root built into the kernel (=y) has no module to load.
    roots = [name for name, option in _ROOTS
             if f"{option}=m" in config or name in files]
    return [files[name] for name in load_order(depends, roots)]


def share_modules(kernel: Kernel, log: Callable[[str], None] = lambda m: None) -> list[Path]:
    """The ``.ko`` files a guest of *kernel* loads, in order, to mount a
    virtio-9p share; downloaded and cached next to the kernel the first time."""
    mdir = kernel.directory / "modules"
    order_file = mdir / _ORDER
    if not order_file.is_file():
        import json

        manifest = json.loads((kernel.directory / "manifest.json").read_text())
        packages = [p for p in manifest["packages"] if not p.endswith("-dbg")]
        root = cache_root()
        with _locked(root):
            if not order_file.is_file():
                tree = _suite_tree(root, kernel.suite)
                work = root / "tmp" / f"modules-{kernel.release}"
                shutil.rmtree(work, ignore_errors=True)
                tmp = kernel.directory / "modules.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    log(f"{kernel.suite}: downloading {', '.join(packages)} for the 9p modules")
                    try:
                        debs = tree.download(packages, work)
                    except LabError:
                        tree.update()
                        debs = tree.download(packages, work)
                    order = _extract(debs, kernel.release,
                                     kernel.config.read_text(errors="replace"), tmp)
                    (tmp / _ORDER).write_text("".join(f"{m}\n" for m in order))
                    shutil.rmtree(mdir, ignore_errors=True)
                    tmp.rename(mdir)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                    shutil.rmtree(tmp, ignore_errors=True)
    return [mdir / m for m in order_file.read_text().split()]


def initramfs_files(kernel: Kernel, log: Callable[[str], None] = lambda m: None) -> dict[str, bytes]:
    """The modules as initramfs files; ``/init`` loads ``/lib/modules/share/*.ko``
    in name order."""
    return {f"/lib/modules/share/{i:02d}-{p.name}": p.read_bytes()
            for i, p in enumerate(share_modules(kernel, log))}


def qemu_share_args(path: Path = Path("/")) -> list[str]:
    """QEMU options exporting *path* read-only as virtio-9p tag :data:`TAG`."""
    if "," in str(path):
        raise LabError(f"cannot share {path} with QEMU: its name has a comma")
    return ["-fsdev", f"local,id={TAG},path={path},security_model=none,readonly=on,"
                      f"multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev={TAG},mount_tag={TAG}"]


def mount_script() -> str:
    """Guest shell commands: mount the share on :data:`MOUNT` with the guest's
    own proc, sys, dev, tracefs and a writable tmpfs on ``/run`` inside it."""
    m = MOUNT
    return f"""set -e
mounted() {{ grep -q " $1 " /proc/mounts; }}
mkdir -p {m}
mounted {m} || mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose {TAG} {m}
mounted {m}/proc || mount -t proc proc {m}/proc
mounted {m}/sys || mount -t sysfs sysfs {m}/sys
mounted {m}/sys/kernel/tracing || mount -t tracefs tracefs {m}/sys/kernel/tracing
mounted {m}/dev || mount -t devtmpfs devtmpfs {m}/dev
mkdir -p {m}/dev/pts
mounted {m}/dev/pts || mount -t devpts -o newinstance,ptmxmode=0666 devpts {m}/dev/pts
mounted {m}/run || mount -t tmpfs -o mode=1777 tmpfs {m}/run
mkdir -p {m}/run/tmp {m}/run/home
chmod 1777 {m}/run/tmp
"""


def chroot_command(argv: Sequence[str], env: dict[str, str] | None = None,
                   user: str | None = None) -> str:
    """A guest shell command running *argv* in the host's root, with a clean
    environment (HOME and TMPDIR on the guest's tmpfs); as *user* with
    ``setpriv`` from util-linux when given. That user keeps only
    ``CAP_DAC_READ_SEARCH``: the venv's interpreter may live in root's home
    (pyenv), which an ordinary user could not even reach; it does not let
    anyone open ``/proc/kcore`` or write tracefs."""
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/run/home", "TMPDIR": "/run/tmp", "LANG": "C.UTF-8",
            "TERM": "xterm-256color"}
    base.update(env or {})
    pre = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in base.items())]
    if user is not None:
        pre = ["/usr/bin/setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *pre]
    return f"chroot {MOUNT} " + " ".join(shlex.quote(a) for a in [*pre, *argv])

