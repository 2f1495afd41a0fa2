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

__all__ = ("best_source_spec", "lab_vmlinux", "source_spec")


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
