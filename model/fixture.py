"""
Fixture
-------

A recording: a consistent snapshot, every kmem page event the kernel traced
after it (ftrace text lines, merged across CPUs in the ``counter`` clock's
total order), and where it all came from. One gzip'd JSON file; the format is
documented in ``docs/fixture-format.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from buddyscope.errors import BuddyscopeError
from buddyscope.model._jsonfile import read_json, write_json
from buddyscope.model.snapshot import Snapshot, SnapshotError

__all__ = ("FIXTURE_FORMAT", "Fixture", "FixtureError")

FIXTURE_FORMAT = 1


class FixtureError(BuddyscopeError):
    """A fixture that cannot be used: corrupt, foreign, too new, or whose
    snapshot and trace disagree."""


@dataclasses.dataclass
class Fixture:
    """A snapshot and the events after it."""

    snapshot: Snapshot
    #: ftrace text lines of the events after the snapshot, in total order.
    trace: list[str]
    #: kernel release, guest size, vCPUs, workload and its sha256, buddyscope
    #: version, boundary method, ring-buffer counters (docs/fixture-format.md).
    provenance: dict[str, Any]
    format: int = FIXTURE_FORMAT

    def check(self, origin: str = "fixture") -> None:
        """Refuse a fixture whose snapshot and trace come from different kernels
        or CPU counts."""
        p, k = self.provenance, self.snapshot.kernel
        if p.get("kernel_release") not in (None, k.release):
            raise FixtureError(
                f"{origin}: the trace is from {p['kernel_release']}, the snapshot from {k.release}"
            )
        if p.get("nr_cpus") not in (None, k.nr_cpus):
            raise FixtureError(
                f"{origin}: the trace has {p['nr_cpus']} CPUs, the snapshot {k.nr_cpus}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"fixture_format": self.format, "provenance": self.provenance,
                "snapshot": self.snapshot.to_dict(), "trace": self.trace}

    def save(self, path: Path) -> None:
        """Write the fixture, its snapshot in the newest snapshot format
        (PFN lists packed, :meth:`Snapshot.to_file_dict`)."""
        d = self.to_dict()
        d["snapshot"] = self.snapshot.to_file_dict()
        write_json(path, d, compresslevel=9)

    @classmethod
    def load(cls, path: Path) -> "Fixture":
        path = Path(path)
        return cls.from_dict(read_json(path, FixtureError, "buddyscope fixture"), path)

    @classmethod
    def from_dict(cls, d: Any, path: Path) -> "Fixture":
        """The fixture in *d*, JSON read from *path* (named in messages)."""
        if not isinstance(d, dict) or "fixture_format" not in d:
            raise FixtureError(f"{path} is not a buddyscope fixture")
        fmt = d["fixture_format"]
        if not isinstance(fmt, int) or fmt > FIXTURE_FORMAT or fmt < 1:
            raise FixtureError(
                f"{path} has fixture format {fmt!r}; this buddyscope reads formats up to "
                f"{FIXTURE_FORMAT}: upgrade buddyscope"
            )
        try:
            snap = Snapshot.from_dict(d["snapshot"], f"{path} (snapshot)")
            trace = d["trace"]
            provenance = d["provenance"]
        except SnapshotError as e:
            raise FixtureError(str(e)) from None
        except KeyError as e:
            raise FixtureError(f"{path} is a corrupt fixture (no {e})") from None
        if not isinstance(provenance, dict):
            raise FixtureError(f"{path} is a corrupt fixture (provenance is not an object)")
        enabled = provenance.get("events_enabled")
        if enabled is not None and not (isinstance(enabled, list)
                                        and all(isinstance(n, str) for n in enabled)):
            # Replay reads it as the names of the events the recording traced.
            raise FixtureError(f"{path} is a corrupt fixture (provenance events_enabled is "
                               f"{type(enabled).__name__} {_short(enabled)}, not a list of "
                               "event names)")
        if not isinstance(trace, list) or not all(isinstance(l, str) for l in trace):
            raise FixtureError(f"{path} is a corrupt fixture (trace is not a list of lines)")
        fixture = cls(snap, trace, provenance, fmt)
        fixture.check(str(path))
        return fixture


def _short(value: Any) -> str:
    """*value* as JSON, cut to fit in one line of a message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
