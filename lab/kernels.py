"""
Lab kernels
-----------

Debian's plain amd64 kernels with their ``-dbg`` vmlinux, fetched into a cache
outside the repository. One kernel is one directory named by its release
(``6.1.0-56-amd64``) holding ``vmlinuz``, ``vmlinux`` (full DWARF),
``config``, ``qemu_fw_cfg.ko`` and ``manifest.json``. The
``.deb`` files are removed once extracted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

from buddyscope.errors import LabError
from buddyscope.lab.apt import (
    AptTree,
    host_codename,
    parse_depends,
    read_system_sources,
    sources_for_suite,
)
from buddyscope.model._atomic import write_atomic
from buddyscope.probe.elf import gnu_build_id, is_static_executable

__all__ = (
    "SERIES_SUITES",
    "Kernel",
    "cache_root",
    "cached_kernels",
    "find_vmlinux",
    "fetch",
    "find_busybox",
    "resolve_kernel",
    "series_of",
)

# The series that matter and the suites whose default kernel they are, in the
# order tried. sid moves on; forky (testing) follows it.
SERIES_SUITES: dict[str, tuple[str, ...]] = {
    "5.10": ("bullseye",),
    "6.1": ("bookworm",),
    "6.12": ("trixie",),
    "7.2": ("sid", "forky"),
}
# Suite words accepted in place of a series; their default kernel is fetched.
_SUITES = (
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke",
    "oldstable", "stable", "testing", "sid", "unstable",
)
# Suites without -updates/-security pockets.
_NO_POCKETS = ("sid", "unstable")

_MANIFEST = "manifest.json"


def cache_root() -> Path:
    """Where the lab keeps kernels and APT trees: ``$BUDDYSCOPE_CACHE``, else
    ``$XDG_CACHE_HOME/buddyscope``, else ``~/.cache/buddyscope``."""
    if os.environ.get("BUDDYSCOPE_CACHE"):
        return Path(os.environ["BUDDYSCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "buddyscope"


def series_of(release: str) -> str:
    """``6.1.0-56-amd64`` -> ``6.1``; ``6.12.118+deb13-amd64`` -> ``6.12``."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise LabError(f"cannot read a kernel series from release {release!r}")
    return f"{m.group(1)}.{m.group(2)}"


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A fetched lab kernel: its files and where they came from."""

    release: str
    series: str
    suite: str
    version: str
    directory: Path
    vmlinux_build_id: str | None

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def fw_cfg_module(self) -> Path | None:
        p = self.directory / "qemu_fw_cfg.ko"
        return p if p.exists() else None

    def size(self) -> int:
        """Bytes on disk."""
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    @classmethod
    def load(cls, directory: Path) -> "Kernel":
        try:
            m = json.loads((directory / _MANIFEST).read_text())
            k = cls(m["release"], m["series"], m["suite"], m["version"], directory,
                    m.get("vmlinux_build_id"))
        except (OSError, ValueError, KeyError) as e:
            raise LabError(f"{directory} is not a complete lab kernel ({e})")
        for p in (k.vmlinuz, k.vmlinux):
            if not p.is_file():
                raise LabError(f"{directory} is not a complete lab kernel ({p.name} missing)")
        return k


def cached_kernels(root: Path | None = None) -> list[Kernel]:
    """Every complete kernel in the cache, oldest series first."""
    d = (root or cache_root()) / "kernels"
    out = []
    if d.is_dir():
        for sub in d.iterdir():
            with contextlib.suppress(LabError):
                out.append(Kernel.load(sub))
    return sorted(out, key=lambda k: (_natural(k.series), _natural(k.release)))


def find_vmlinux(release: str, build_id: str | None) -> list[Path]:
    """The cached vmlinux files of *release* whose build ID starts with
    *build_id* (any, without one): the debug info a probe source looks for
    before drgn's standard search (``SourceSpec.find_vmlinux``)."""
    return [k.vmlinux for k in cached_kernels()
            if k.release == release and (not build_id or (k.vmlinux_build_id or "").startswith(build_id[:40]))]


def resolve_kernel(spec: str, root: Path | None = None) -> Kernel:
    """The cached kernel named by *spec*: a series, a suite, or a release."""
    kernels = cached_kernels(root)
    for pick in (
        lambda k: k.release == spec,
        lambda k: k.series == spec,
        lambda k: k.suite == spec,
    ):
        found = [k for k in kernels if pick(k)]
        if found:
            return found[-1]
    if spec not in SERIES_SUITES and spec not in _SUITES and not re.match(r"\d+\.\d+\.", spec):
        raise LabError(_unknown(spec))
    have = ", ".join(k.series for k in kernels) or "none"
    raise LabError(
        f"no lab kernel for {spec} in the cache (cached: {have}); "
        f"run: buddyscope lab fetch {spec}"
    )


def _unknown(spec: str) -> str:
    return (
        f"unknown series {spec!r}: expected one of {', '.join(SERIES_SUITES)} "
        f"or a Debian suite name ({', '.join(_SUITES)})"
    )


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _suite_tree(root: Path, suite: str) -> AptTree:
    host = host_codename()
    # BUDDYSCOPE_ETC_APT points the lab at another APT configuration to read
    # (tests use it to stand in an unreachable archive).
    etc_apt = Path(os.environ.get("BUDDYSCOPE_ETC_APT", "/etc/apt"))
    sources = sources_for_suite(
        read_system_sources(etc_apt), host, suite, pockets=suite not in _NO_POCKETS
    )
    return AptTree(root / "apt" / suite, sources)


# Where a release's vmlinuz, config and modules are packaged, newest layout
# first: sid (7.x) splits them into linux-binary-unsigned-, linux-base- and
# linux-modules-; up to 6.12 linux-image-RELEASE-unsigned holds them all; the
# signed linux-image-RELEASE is the last resort.
_IMAGE_LAYOUTS = (
    ("linux-binary-unsigned-{r}", "linux-base-{r}", "linux-modules-{r}"),
    ("linux-image-{r}-unsigned",),
    ("linux-image-{r}",),
)


def _image_packages(tree: AptTree, release: str) -> tuple[list[str], str] | None:
    """(packages, version) holding ``vmlinuz``, ``config`` and the modules of *release*."""
    for layout in _IMAGE_LAYOUTS:
        names = [n.format(r=release) for n in layout]
        stanzas = [tree.show(n) for n in names]
        if all(stanzas) and _has_files(stanzas[0]):
            return names, stanzas[0].get("Version", "?")  # type: ignore[union-attr]
    return None


def _has_files(stanza: dict[str, str] | None) -> bool:
    # sid's linux-image-RELEASE is an empty package that depends on the split ones.
    return bool(stanza) and int(stanza.get("Installed-Size", "0")) > 100  # type: ignore[union-attr]


def _pick_release(tree: AptTree, suite: str, series: str | None) -> tuple[str, list[str], str]:
    """(release, image packages, version) of the newest plain amd64 kernel of
    *series* in *suite*; the suite's default (what ``linux-image-amd64``
    depends on) when it is of that series."""
    meta = tree.show("linux-image-amd64")
    if meta and "Depends" in meta:
        for dep in parse_depends(meta["Depends"]):
            m = re.fullmatch(r"linux-image-(.+-amd64)(-unsigned)?", dep)
            if m and (series is None or series_of(m.group(1)) == series):
                image = _image_packages(tree, m.group(1))
                if image:
                    return (m.group(1), *image)
    if series is None:
        raise LabError(f"{suite} has no linux-image-amd64 metapackage")
    names = tree.package_names(
        rf"linux-image-({re.escape(series)}\.[0-9][^ ]*-amd64)(-unsigned)?"
    )
    releases = {re.sub(r"^linux-image-|-unsigned$", "", n) for n in names}
    releases = {r for r in releases if not re.search(r"-(cloud|rt)-amd64$", r)}
    for release in sorted(releases, key=_natural, reverse=True):
        image = _image_packages(tree, release)
        if image:
            return (release, *image)
    raise LabError(f"{suite} has no plain amd64 kernel of series {series}")


def fetch(spec: str, root: Path | None = None,
          log: Callable[[str], None] = lambda s: None) -> Kernel:
    """Fetch the newest plain amd64 kernel of *spec* (a series or a suite) and
    its ``-dbg`` vmlinux into the cache; a no-op when it is already there."""
    root = root or cache_root()
    if spec in SERIES_SUITES:
        series, suites = spec, SERIES_SUITES[spec]
    elif spec in _SUITES:
        series, suites = None, (spec,)
    else:
        raise LabError(_unknown(spec))
    with _locked(root):
        t0 = time.monotonic()
        errors: list[str] = []
        for suite in suites:
            tree = _suite_tree(root, suite)
            log(f"{suite}: apt-get update")
            try:
                tree.update()
                release, image, version = _pick_release(tree, suite, series)
            except LabError as e:
                errors.append(str(e))
                continue
            break
        else:
            raise LabError("; ".join(errors))
        kdir = root / "kernels" / release
        with contextlib.suppress(LabError):
            k = Kernel.load(kdir)
            if k.version == version:
                log(f"{release} ({version}) is already cached")
                return k
        dbg = f"linux-image-{release}-dbg"
        if tree.show(dbg) is None:
            raise LabError(f"{suite} has no {dbg}: no debug info for {release}")
        work = root / "tmp" / release
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(kdir, ignore_errors=True)
        try:
            log(f"{suite}: downloading {', '.join(image)} and {dbg} ({version})")
            *images, dbg_deb = tree.download([*image, dbg], work)
            kdir.mkdir(parents=True)
            _extract_image(images, release, kdir, log)
            log(f"extracting {dbg_deb.name}")
            _extract_vmlinux(dbg_deb, release, kdir)
            dbg_deb.unlink()
            manifest = {
                "release": release,
                "series": series_of(release),
                "suite": suite,
                "version": version,
                "packages": [*image, dbg],
                "vmlinux_build_id": gnu_build_id(kdir / "vmlinux"),
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fetch_seconds": round(time.monotonic() - t0, 1),
            }
            # Last, and whole: a kernel directory with a manifest is complete.
            write_atomic(kdir / _MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        except BaseException:
            shutil.rmtree(kdir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Kernel.load(kdir)


def _members(deb: Path, want: Callable[[str], str | None]) -> Iterator[tuple[str, tarfile.TarFile, tarfile.TarInfo]]:
    """Stream the data tarball of *deb*; yield the members *want* names."""
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for m in tar:
                if m.isfile():
                    name = want(m.name.lstrip("./"))
                    if name:
                        yield name, tar, m
    except tarfile.TarError as e:
        raise LabError(f"{deb.name} is not a readable Debian package ({e})")
    finally:
        p.kill()
        p.wait()


def _save(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path) -> None:
    src = tar.extractfile(m)
    assert src is not None
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _extract_image(debs: list[Path], release: str, kdir: Path,
                   log: Callable[[str], None]) -> None:
    r = re.escape(release)
    patterns = {
        "vmlinuz": rf"boot/vmlinuz-{r}|usr/lib/modules/{r}/vmlinuz(\.unsigned)?",
        "config": rf"boot/config-{r}|usr/lib/modules/{r}/config",
        # lib/ moved to usr/lib/ with the /usr merge; modules may be compressed.
        "qemu_fw_cfg.ko": rf"(usr/)?lib/modules/{r}/kernel/drivers/firmware/qemu_fw_cfg\.ko(\.xz|\.zst)?",
    }

    def want(name: str) -> str | None:
        for dest, rx in patterns.items():
            if re.fullmatch(rx, name):
                return dest + name[name.index(".ko") + 3:] if ".ko" in name else dest
        return None

    for deb in debs:
        log(f"extracting {deb.name}")
        for name, tar, m in _members(deb, want):
            _save(tar, m, kdir / name)
        deb.unlink()
    for name in ("vmlinuz", "config"):
        if not (kdir / name).exists():
            raise LabError(f"{', '.join(d.name for d in debs)} hold no {name} for {release}")
    _decompress_module(kdir / "qemu_fw_cfg.ko")
    config = (kdir / "config").read_text(errors="replace")
    if "CONFIG_FW_CFG_SYSFS=m" in config and not (kdir / "qemu_fw_cfg.ko").exists():
        raise LabError(f"{release} builds qemu_fw_cfg as a module but no qemu_fw_cfg.ko was found")


def _decompress_module(ko: Path) -> None:
    xz, zst = ko.with_name(ko.name + ".xz"), ko.with_name(ko.name + ".zst")
    if xz.exists():
        ko.write_bytes(lzma.decompress(xz.read_bytes()))
        xz.unlink()
    elif zst.exists():
        try:
            subprocess.run(["zstd", "-q", "-d", "-f", str(zst), "-o", str(ko)], check=True)
        except (OSError, subprocess.CalledProcessError):
            raise LabError(f"{zst.name} is zstd-compressed: install Debian's zstd") from None
        zst.unlink()


def _extract_vmlinux(deb: Path, release: str, kdir: Path) -> None:
    def want(name: str) -> str | None:
        if name in (f"usr/lib/debug/boot/vmlinux-{release}",
                    f"usr/lib/debug/lib/modules/{release}/vmlinux"):
            return "vmlinux"
        return None

    for _name, tar, m in _members(deb, want):
        _save(tar, m, kdir / "vmlinux")
        return
    raise LabError(f"{deb.name} holds no vmlinux for {release}")


def find_busybox(root: Path | None = None) -> Path:
    """A static busybox for the initramfs: ``$BUDDYSCOPE_BUSYBOX``, the one
    ``lab fetch`` cached from the host suite's ``busybox-static``, or the system's."""
    candidates = []
    if os.environ.get("BUDDYSCOPE_BUSYBOX"):
        candidates.append(Path(os.environ["BUDDYSCOPE_BUSYBOX"]))
    candidates.append((root or cache_root()) / "busybox" / "busybox")
    which = shutil.which("busybox")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and is_static_executable(c):
            return c
    raise LabError(
        "no static busybox: install Debian's busybox-static, or run `buddyscope lab fetch`"
    )


def fetch_busybox(root: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Cache the host suite's ``busybox-static`` binary (no root needed)."""
    root = root or cache_root()
    dest = root / "busybox" / "busybox"
    if dest.is_file() and is_static_executable(dest):
        return dest
    with _locked(root):
        suite = host_codename()
        tree = _suite_tree(root, suite)
        log(f"{suite}: apt-get update")
        tree.update()
        work = root / "tmp" / "busybox"
        try:
            log(f"{suite}: downloading busybox-static")
            (deb,) = tree.download(["busybox-static"], work)
            dest.parent.mkdir(parents=True, exist_ok=True)
            for _n, tar, m in _members(deb, lambda n: "busybox" if n in ("bin/busybox", "usr/bin/busybox") else None):
                _save(tar, m, dest)
                dest.chmod(0o755)
                break
            else:
                raise LabError(f"{deb.name} holds no bin/busybox")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest
