"""
Wiring
------

The one place that turns command-line arguments into sources, guests and
sessions: the probe (:mod:`buddyscope.probe.sources`), the lab
(:mod:`buddyscope.lab`) and the TUI (:mod:`buddyscope.tui`) do not know of
each other; this module hands each what it needs, e.g. the lab's kernel
cache as the place the probe looks for a vmlinux by build ID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from buddyscope.errors import BuddyscopeError

__all__ = ("best_source_spec", "lab_vmlinux", "open_lab_session", "open_session",
           "session_loader", "source_spec")


def lab_vmlinux(release: str, build_id: Optional[str]) -> Sequence[Path]:
    """The lab cache's vmlinux files for a kernel (release, build ID), tried
    before drgn's standard search."""
    from buddyscope.lab.kernels import find_vmlinux

    return find_vmlinux(release, build_id)


def source_spec(args):
    """The :class:`~buddyscope.probe.sources.SourceSpec` of the source
    options (``FILE``, ``--live``, ``--vmcore``, ``--qmp``, ``--procfs``)."""
    from buddyscope.probe.sources import SourceSpec

    chosen = [n for n, v in (("FILE", args.file), ("--live", args.live), ("--vmcore", args.vmcore),
                             ("--qmp", args.qmp), ("--procfs", args.procfs)) if v]
    if len(chosen) > 1:
        raise BuddyscopeError(f"give one source, not {' and '.join(chosen)}")
    if args.pause and not args.qmp:
        raise BuddyscopeError("--pause goes with --qmp")
    if args.vmlinux and (args.file or args.procfs):
        raise BuddyscopeError("--vmlinux goes with --live, --vmcore or --qmp")
    return SourceSpec(live=args.live, vmcore=args.vmcore, qmp=args.qmp, pause=args.pause,
                      procfs=args.procfs, file=args.file, vmlinux=args.vmlinux,
                      find_vmlinux=lab_vmlinux)


def best_source_spec():
    """The best source this machine offers, and why
    (:func:`buddyscope.probe.sources.best_source_spec`)."""
    from buddyscope.probe.sources import best_source_spec as best

    return best(find_vmlinux=lab_vmlinux)


def _check_file(spec) -> bool:
    """Whether *spec*'s file (if any) is a recording; one line if it is
    missing or a directory. Reads the first bytes only."""
    from buddyscope.model.load import is_fixture

    if spec.file is None:
        return False
    path = Path(spec.file)
    if not path.exists():
        raise BuddyscopeError(f"{path}: no such file")
    if path.is_dir():
        raise BuddyscopeError(f"{path} is a directory, not a snapshot or fixture file")
    return is_fixture(path)


def open_session(spec, why: str = "", progress=lambda text: None):
    """A :class:`~buddyscope.tui.session.Session` on *spec* (a
    :class:`~buddyscope.probe.sources.SourceSpec`); a file that is a
    recording opens in replay mode. *progress(text)* hears of each phase."""
    from buddyscope.probe.sources import open_source
    from buddyscope.tui.session import FixtureSource, Session

    if _check_file(spec):
        from buddyscope.model.load import load_recording
        from buddyscope.model.stepping import Stepper

        progress(f"loading the recording {Path(spec.file).name}")
        recording = load_recording(Path(spec.file))
        progress("indexing its events")
        stepper = Stepper.from_recording(recording)
        return Session(FixtureSource(stepper), why, stepper)
    progress(f"loading {Path(spec.file).name}" if spec.file is not None else
             "opening the source")
    return Session(open_source(spec), why)


def session_loader(spec, why: str = ""):
    """A :class:`~buddyscope.tui.session.SessionLoader` for *spec*: what can
    be checked at once is (a missing file, a directory: one line, before
    the TUI starts); the rest (reading the file, drgn's debug info) is left
    to the TUI's worker, behind its first frame."""
    from buddyscope.tui.session import SessionLoader

    fixture = _check_file(spec)
    kind = "fixture" if fixture else spec.kind or "?"
    what = Path(spec.file).name if spec.file is not None else kind
    return SessionLoader(kind, lambda progress: open_session(spec, why, progress), why, what)


def open_lab_session(kernel, smp: int = 1, mem_mib: int = 512,
                     workload: Optional[Path] = None, log=lambda m: None):
    """Boot a lab guest of *kernel* (a :class:`~buddyscope.lab.kernels.Kernel`
    or a series) with its kmem events traced, and *workload* looping in it,
    as a :class:`~buddyscope.tui.session.Session`: ``tui --lab``. Boot from
    the thread that runs the TUI: the guest dies with the thread that
    booted it."""
    from buddyscope.lab.kernels import resolve_kernel
    from buddyscope.lab.watch import LabWatcher
    from buddyscope.tui.session import Session

    if workload is not None and not Path(workload).is_file():
        raise BuddyscopeError(f"{workload}: no such workload file")
    if isinstance(kernel, str):
        kernel = resolve_kernel(kernel)
    watcher = LabWatcher.open(kernel, smp=smp, mem_mib=mem_mib, workload=workload, log=log)
    return Session(watcher, watcher.label)
