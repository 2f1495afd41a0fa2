"""
Session
-------

What the TUI is handed: a source (anything with ``kind``, ``snapshot()``
and ``close()``), how it was chosen, and for a recording the
:class:`~buddyscope.model.stepping.Stepper` that replays it. A source that
also has ``refresh()`` is traced: each refresh gives the snapshot and the
window of events since the last one (``refresh().snapshot``,
``refresh().window`` with ``before``, ``events``, ``index``, ``invalid``,
``read_seconds``, and ``refresh().rearmed``).

The TUI does not open sources or boot guests: :mod:`buddyscope.wiring`
does, checks the input and fails with one
:class:`~buddyscope.errors.BuddyscopeError` line before any terminal is
taken over, then hands the TUI a :class:`Session`, or a
:class:`SessionLoader` when opening takes long (a big snapshot file, drgn
loading debug info): the TUI draws its first frame at once and runs the
loader in a worker, showing its progress.

Imports neither textual nor drgn, nor the probe or the lab.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:   # not imported at run time: the first frame does not wait for the model
    from buddyscope.model.snapshot import Snapshot
    from buddyscope.model.stepping import Stepper

__all__ = ("FixtureSource", "Session", "SessionLoader")


class FixtureSource:
    """A recording: its snapshot is the state at step 0."""

    kind = "fixture"

    def __init__(self, stepper: "Stepper"):
        self.stepper = stepper

    def snapshot(self) -> "Snapshot":
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
    stepper: Optional["Stepper"] = None

    @property
    def kind(self) -> str:
        return getattr(self.source, "kind", "?")

    @property
    def refresh(self) -> Optional[float]:
        """Default seconds between reads (None: the state never changes)."""
        return _REFRESH.get(self.kind)

    @property
    def workload(self) -> Optional[str]:
        """The workload a traced lab guest runs (None: idle, or no guest)."""
        return getattr(self.source, "workload", None)

    @property
    def check(self) -> str:
        return _CHECK.get(self.kind, "predictions are not checked for this source")

    def close(self) -> None:
        self.source.close()


@dataclasses.dataclass
class SessionLoader:
    """A session still to be opened: what the TUI needs to lay itself out
    before it has one, and the call that opens it. ``open(progress)`` runs
    in a thread worker and returns the :class:`Session`; it calls
    ``progress(text)`` as it goes from one phase to the next, and raises
    :class:`~buddyscope.errors.BuddyscopeError` (one line) when the source
    cannot be opened."""

    #: The kind of source the session will have (``file``, ``fixture``, ...).
    kind: str
    open: Callable[[Callable[[str], None]], Session]
    #: How the source was chosen (best_source_spec's reason), or "".
    why: str = ""
    #: What is being opened, in words ("s.json.gz"), for the progress line.
    what: str = ""

    @property
    def replay(self) -> bool:
        """The session will replay a recording."""
        return self.kind == "fixture"

    @property
    def refresh(self) -> Optional[float]:
        return _REFRESH.get(self.kind)
