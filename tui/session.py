"""
Session
-------

What the TUI is opened on: a source (anything with ``kind``,
``snapshot()`` and ``close()``, see :mod:`buddyscope.probe.sources`), how it
was chosen, and for a recording the events to replay. A source that also
has ``refresh()`` (:class:`buddyscope.lab.watch.LabWatcher`) is traced: each
refresh gives the snapshot and the window of events since the last one. Opening checks the
input and fails with one :class:`~buddyscope.errors.BuddyscopeError` line,
before any terminal is taken over.

Imports neither textual nor drgn (the probe's backends import drgn only when
a drgn source is opened).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot
from buddyscope.tui.stepper import Stepper

__all__ = ("FixtureSource", "Session", "open_lab_session", "open_session")


class FixtureSource:
    """A recording: its snapshot is the state at step 0."""

    kind = "fixture"

    def __init__(self, stepper: Stepper):
        self.stepper = stepper

    def snapshot(self) -> Snapshot:
        return self.stepper.snapshot

    def close(self) -> None:
        pass


#: Seconds between reads of a source that changes; None: read once.
_REFRESH = {"live": 2.0, "qmp": 2.0, "procfs": 2.0, "lab": 3.0}

#: Whether the model's predictions can be checked against what the kernel
#: then did, per source kind, in words for the Compare panel.
_CHECK = {
    "fixture": "predictions are checked against the recorded trace: see the Replay tab",
    "file": "a snapshot file does not change: there is nothing to check predictions against",
    "vmcore": "a vmcore does not change: there is nothing to check predictions against",
    "live": "tracing of a live source is not available in the TUI yet: which predictions "
            "came true is not checked (record a fixture and open it to score the model)",
    "qmp": "tracing of a QEMU guest is not available in the TUI yet: which predictions "
           "came true is not checked (`buddyscope record --lab` records a fixture to replay)",
    "lab": "predictions are checked after each refresh against the events traced since the "
           "last one: see the Trace tab",
    "procfs": "procfs gives counts only: the model needs PFNs, so nothing is predicted",
}


@dataclasses.dataclass
class Session:
    source: object
    #: How the source was chosen (best_source_spec's reason), or "".
    why: str = ""
    stepper: Optional[Stepper] = None

    @property
    def kind(self) -> str:
        return getattr(self.source, "kind", "?")

    @property
    def refresh(self) -> Optional[float]:
        """Default seconds between reads (None: the state never changes)."""
        return _REFRESH.get(self.kind)

    @property
    def check(self) -> str:
        return _CHECK.get(self.kind, "predictions are not checked for this source")

    def close(self) -> None:
        self.source.close()


def _is_fixture(path: Path) -> bool:
    from buddyscope.model._jsonfile import read_json
    from buddyscope.model.fixture import FixtureError

    try:
        d = read_json(path, FixtureError, "buddyscope fixture")
    except FixtureError:
        return False
    return isinstance(d, dict) and "fixture_format" in d


def open_session(spec, why: str = "") -> Session:
    """Open *spec* (a :class:`~buddyscope.probe.sources.SourceSpec`); a file
    that is a recording opens in replay mode."""
    from buddyscope.probe.sources import open_source
    from buddyscope.tui.stepper import load_recording

    if spec.file is not None:
        path = Path(spec.file)
        if not path.exists():
            raise BuddyscopeError(f"{path}: no such file")
        if path.is_dir():
            raise BuddyscopeError(f"{path} is a directory, not a snapshot or fixture file")
        if _is_fixture(path):
            stepper = load_recording(path)
            return Session(FixtureSource(stepper), why, stepper)
    return Session(open_source(spec), why)


def open_lab_session(kernel, smp: int = 1, mem_mib: int = 512,
                     workload: Optional[Path] = None, log=lambda m: None) -> Session:
    """Boot a lab guest of *kernel* (a :class:`~buddyscope.lab.kernels.Kernel`
    or a series) with its kmem events traced, and *workload* looping in it:
    ``tui --lab``. Boot from the thread that runs the TUI: the guest dies
    with the thread that booted it."""
    from buddyscope.lab.kernels import resolve_kernel
    from buddyscope.lab.watch import LabWatcher

    if workload is not None and not Path(workload).is_file():
        raise BuddyscopeError(f"{workload}: no such workload file")
    if isinstance(kernel, str):
        kernel = resolve_kernel(kernel)
    watcher = LabWatcher.open(kernel, smp=smp, mem_mib=mem_mib, workload=workload, log=log)
    return Session(watcher, watcher.label)
