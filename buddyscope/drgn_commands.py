"""
drgn commands
-------------

buddyscope's views as commands of drgn's own command framework
(``drgn.commands``), on whatever program drgn has open: the live kernel, a
vmcore, a QEMU guest. Registered through drgn's plugin mechanism (the
``drgn.plugins`` entry point in pyproject.toml), the way drgn registers its
own built-in and crash commands: importing this module registers them.

In drgn's REPL::

    >>> %bs_free --zone DMA32 --order 0
    >>> %bs_pcp --cpu 0
    >>> %bs_find 0x1234
    >>> %bs_predict --order 0 --gfp GFP_KERNEL -n 4

and in crash-compatible sessions (``drgn-crash``, or ``%crash``) under the
same names. Each command reads the allocator state afresh (a running
kernel moves on between two commands).
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from drgn import Program, ProgramFlags
from drgn.commands import CommandError, argument
from drgn.commands.linux import linux_kernel_command

try:
    # Where drgn defines its crash commands (drgn 0.3: a private module).
    from drgn.commands._crash.common import crash_command
except ImportError:  # a drgn without crash commands: the REPL's % commands only
    crash_command = None

from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import Snapshot

__all__ = ()


def _snapshot(prog: Program) -> Snapshot:
    """The allocator state of *prog* now."""
    from buddyscope.probe.sources import read_program

    if prog.flags & ProgramFlags.IS_LIVE:
        source, paused = "live", False
    else:
        source, paused = "vmcore", True
    return read_program(prog, source, "drgn", paused)


def _run(body):
    """Run *body*, turning buddyscope's one-line errors into drgn's."""
    def wrapper(prog: Program, name: str, args: argparse.Namespace, **kwargs: Any) -> None:
        try:
            body(prog, args)
        except BuddyscopeError as e:
            raise CommandError(f"{name}: {e}") from None
    wrapper.__name__ = body.__name__
    return wrapper


def _register(name: str, description: str, arguments, body) -> None:
    # The default namespace (the REPL's %command) and crash's (drgn-crash).
    fn = _run(body)
    linux_kernel_command(name=name, description=description, arguments=arguments)(fn)
    if crash_command is not None:
        crash_command(name=name, description=description, arguments=arguments)(fn)


def _zone_filter(snap: Snapshot, zone: Optional[str]):
    zones = [z for z in snap.zones if zone is None or z.name == zone]
    if not zones:
        raise BuddyscopeError(f"no zone {zone!r}: this kernel has "
                              f"{', '.join(z.name for z in snap.zones)}")
    return zones


def _free(prog: Program, args: argparse.Namespace) -> None:
    snap = _snapshot(prog)
    k = snap.kernel
    mt = None if args.migratetype is None else k.migratetype(args.migratetype)
    for z in _zone_filter(snap, args.zone):
        print(f"Node {z.node}, zone {z.name}")
        for order, area in enumerate(z.free_area):
            if args.order is not None and order != args.order:
                continue
            for m, pfns in enumerate(area.free_list or ()):
                if (mt is not None and m != mt) or not pfns:
                    continue
                print(f"  free_area[{order}].free_list[{k.migratetypes[m]}] ({len(pfns)}): "
                      + " ".join(f"{p:#x}" for p in pfns))


def _pcp(prog: Program, args: argparse.Namespace) -> None:
    snap = _snapshot(prog)
    k = snap.kernel
    for z in _zone_filter(snap, args.zone):
        for p in z.pcp:
            if args.cpu is not None and p.cpu != args.cpu:
                continue
            print(f"Node {z.node}, zone {z.name}, cpu {p.cpu}: count {p.count} high {p.high} "
                  f"batch {p.batch}")
            for pindex, pfns in enumerate(p.lists or ()):
                if pfns:
                    pl = k.pcp_lists[pindex]
                    types = "/".join(k.migratetypes[m] for m in pl.migratetypes)
                    print(f"  lists[{pindex}] (order {pl.order} {types}) ({len(pfns)}): "
                          + " ".join(f"{x:#x}" for x in pfns))


def _find(prog: Program, args: argparse.Namespace) -> None:
    from buddyscope.model.find import find_page, format_found, zone_spans

    snap = _snapshot(prog)
    found = find_page(snap, args.page)
    if found.where == "no zone":
        raise BuddyscopeError(f"PFN {found.pfn:#x} is in no zone ({zone_spans(snap)})")
    print(format_found(found))


def _predict(prog: Program, args: argparse.Namespace) -> None:
    from buddyscope.model.predict import format_outcomes, model_after, predict_request
    from buddyscope.model.request import make_request

    snap = _snapshot(prog)
    alloc = model_after(snap)
    req = make_request(alloc, args.order, args.cpu, gfp=args.gfp, migratetype=args.migratetype)
    if not snap.capture.paused:
        print("note: a running kernel: the state may change while it is read")
    print(format_outcomes(predict_request(alloc, req, args.n), req))


_register("bs_free", "buddyscope: buddy free lists with PFNs, head first", (
    argument("--zone", help="only this zone (DMA, DMA32, Normal, ...)"),
    argument("--order", type=int, help="only this order"),
    argument("--migratetype", help="only this migratetype (Unmovable, Movable, ...)"),
), _free)

_register("bs_pcp", "buddyscope: per-cpu page lists with PFNs, head first", (
    argument("--zone", help="only this zone"),
    argument("--cpu", type=int, help="only this CPU"),
), _pcp)

_register("bs_find", "buddyscope: which free or pcp list a page is on, where, and its block", (
    argument("page", metavar="PFN|ADDRESS",
             help="a PFN or a struct page address (decimal, or hex: 0x1234, ffffea...)"),
), _find)

_register("bs_predict", "buddyscope: the next allocations the kernel will make for a request", (
    argument("--order", type=int, default=0, help="allocation order (default 0)"),
    argument("--gfp", help="gfp mask, e.g. GFP_KERNEL|__GFP_ZERO"),
    argument("--migratetype", help="Unmovable, Movable or Reclaimable (instead of --gfp)"),
    argument("--cpu", type=int, default=0, help="the CPU allocating (default 0)"),
    argument("-n", type=int, default=1, help="how many allocations (default 1)"),
), _predict)


def drgn_prog_set(prog: Program) -> None:
    """drgn's plugin hook: nothing to do per program (the commands read the
    program they are run on); defined so that drgn loads this plugin."""
