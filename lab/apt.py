"""
Private APT tree
----------------

The lab downloads Debian kernels of suites this machine does not run. It does
so with an APT tree of its own: a ``sources.list`` built from the archive URIs
already configured on the machine (only the suite word changes), its own lists
and cache, and ``Dir::State::status=/dev/null``. The system's APT
configuration is only read, never written, and no archive host name appears in
this code: every URI comes from the machine's own sources.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from buddyscope.errors import BuddyscopeError

__all__ = (
    "AptSource",
    "AptTree",
    "host_codename",
    "parse_deb822_sources",
    "parse_one_line_sources",
    "read_system_sources",
    "sources_for_suite",
)


@dataclasses.dataclass(frozen=True)
class AptSource:
    """One ``deb`` entry: an archive URI, one suite, its components."""

    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str | None = None

    def one_line(self) -> str:
        """This entry in the one-line ``sources.list`` format."""
        opts = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        return f"deb {opts}{self.uri} {self.suite} {' '.join(self.components)}"


def parse_one_line_sources(text: str) -> list[AptSource]:
    """Parse the one-line format of ``sources.list(5)``; only ``deb`` lines."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        signed_by = None
        m = re.match(r"^(deb|deb-src)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not m or m.group(1) != "deb":
            continue
        if m.group(2):
            for opt in m.group(2).strip("[] \t").split():
                key, _, value = opt.partition("=")
                if key == "signed-by":
                    signed_by = value
        out.append(
            AptSource(m.group(3), m.group(4), tuple(m.group(5).split()), signed_by)
        )
    return out


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Parse the deb822 format of ``sources.list(5)`` (``*.sources`` files)."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += "\n" + raw.strip()
                continue
            key, sep, value = raw.partition(":")
            if not sep:
                key = None
                continue
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by") or None
        # An inline key block cannot be passed as a path: keep the default keyring.
        if signed_by and "\n" in signed_by:
            signed_by = None
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(
                    AptSource(uri, suite, tuple(fields.get("components", "").split()), signed_by)
                )
    return out


def read_system_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled ``deb`` entry configured under *etc_apt*, in APT's order."""
    files: list[Path] = []
    if (etc_apt / "sources.list").is_file():
        files.append(etc_apt / "sources.list")
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    out: list[AptSource] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        out += parse_deb822_sources(text) if f.suffix == ".sources" else parse_one_line_sources(text)
    return out


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """``VERSION_CODENAME`` of this machine (``bookworm``)."""
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "VERSION_CODENAME" and value.strip('"'):
                return value.strip('"')
    except OSError:
        pass
    raise BuddyscopeError(f"cannot tell this machine's Debian suite from {os_release}")


def sources_for_suite(
    system: Sequence[AptSource], host: str, suite: str, pockets: bool = True
) -> list[AptSource]:
    """Rewrite the host's Debian entries to *suite*, changing only the suite.

    Entries whose suite is *host* or ``host-<pocket>`` (``-updates``,
    ``-security``, ...) are Debian archive entries; all others (third-party
    repositories) are dropped. With *pockets* false (``sid`` has none), only
    the base suite is kept.
    """
    out: list[AptSource] = []
    for src in system:
        if src.suite == host:
            new = suite
        elif src.suite.startswith(host + "-") and pockets:
            pocket = src.suite[len(host) :]
            if pocket == "-backports":
                continue
            new = suite + pocket
        else:
            continue
        entry = dataclasses.replace(src, suite=new)
        if entry not in out:
            out.append(entry)
    if not any(s.suite == suite for s in out):
        raise BuddyscopeError(
            f"no Debian archive entry for suite {host!r} in this machine's APT sources"
        )
    return out


class AptTree:
    """An APT tree of its own under *root*, for one suite.

    :param root: directory holding ``sources.list``, lists and cache.
    :param sources: the entries to write into its ``sources.list``.
    :param retries: ``Acquire::Retries`` for downloads.
    """

    def __init__(self, root: Path, sources: Iterable[AptSource], retries: int = 1):
        self.root = root
        self.sources = list(sources)
        self.retries = retries
        for sub in ("lists/partial", "cache/archives/partial", "empty"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text(
            "".join(s.one_line() + "\n" for s in self.sources)
        )

    def _options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": r / "empty",
            "Dir::Etc::Preferences": r / "empty" / "preferences",
            "Dir::Etc::PreferencesParts": r / "empty",
            "Dir::State::Lists": r / "lists",
            "Dir::State::status": "/dev/null",
            "Dir::Cache": r / "cache",
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Debug::NoLocking": "1",
            "Acquire::Languages": "none",
            "APT::Architectures": "amd64",
            "APT::Get::List-Cleanup": "0",
            "Acquire::Retries": str(self.retries),
        }
        out = []
        for k, v in opts.items():
            out += ["-o", f"{k}={v}"]
        return out

    def _run(self, tool: str, args: Sequence[str], cwd: Path | None = None,
             timeout: float = 600) -> str:
        cmd = [tool, *self._options(), *args]
        try:
            p = subprocess.run(
                cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
            )
        except FileNotFoundError:
            raise BuddyscopeError(f"{tool} not found: the lab needs Debian's APT")
        except subprocess.TimeoutExpired:
            raise BuddyscopeError(f"{tool} {' '.join(args[:1])} timed out after {timeout:.0f} s")
        if p.returncode != 0:
            err = [l for l in (p.stderr or p.stdout).splitlines() if l.strip()]
            raise BuddyscopeError(
                f"{tool} {' '.join(args[:2])} failed: {err[-1] if err else 'exit ' + str(p.returncode)}"
            )
        return p.stdout

    def update(self) -> None:
        """``apt-get update`` on this tree; a source that cannot be reached is an error."""
        out = self._run("apt-get", ["-q", "update"])
        # apt-get update exits 0 when a mirror answered 404 or could not be
        # reached; it says so with "Err:" / "W: Failed to fetch".
        bad = [l for l in out.splitlines() if l.startswith("Err:")]
        if bad:
            raise BuddyscopeError(f"archive cannot be reached: {bad[0]}")

    def show(self, package: str) -> dict[str, str] | None:
        """The candidate stanza of *package* (``apt-cache show``), or None."""
        try:
            out = self._run("apt-cache", ["show", "--no-all-versions", package])
        except BuddyscopeError:
            return None
        return _first_stanza(out)

    def package_names(self, pattern: str) -> list[str]:
        """Names of the packages matching the regular expression *pattern*."""
        out = self._run("apt-cache", ["pkgnames"])
        rx = re.compile(pattern)
        return sorted(n for n in out.split() if rx.fullmatch(n))

    def download(self, packages: Sequence[str], dest: Path) -> list[Path]:
        """``apt-get download`` *packages* into *dest*; return the ``.deb`` paths."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run("apt-get", ["-q", "download", *packages], cwd=dest, timeout=1800)
        got = []
        for pkg in packages:
            # apt-get download names files NAME_VERSION_ARCH.deb, the epoch's
            # colon escaped as %3a.
            found = sorted(dest.glob(f"{pkg}_*.deb"))
            if not found:
                raise BuddyscopeError(f"apt-get download gave no file for {pkg}")
            got.append(found[-1])
        return got


def _first_stanza(text: str) -> dict[str, str] | None:
    fields: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if not raw.strip():
            if fields:
                break
            continue
        if raw[:1] in (" ", "\t") and key:
            fields[key] += "\n" + raw.strip()
            continue
        key, sep, value = raw.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields or None


def parse_depends(value: str) -> list[str]:
    """Package names of a ``Depends:`` field, first alternative of each."""
    names = []
    for dep in value.split(","):
        first = dep.split("|")[0].strip()
        if first:
            names.append(first.split()[0])
    return names
