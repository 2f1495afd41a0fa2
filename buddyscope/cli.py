"""The ``buddyscope`` command line.

Every failure the user can cause or meet (bad arguments, a missing tool, an
unreachable archive, a guest that panics) ends as one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from buddyscope import __version__
from buddyscope.errors import BuddyscopeError

__all__ = ("main",)


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage on error; keep it to one line plus the usage.
    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"buddyscope: error: {message}\n")


def _size(text: str) -> int:
    """``512M``, ``2G``, ``1024`` (MiB) -> MiB."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t.endswith("G"):
            return int(float(t[:-1]) * 1024)
        if t.endswith("M"):
            return int(t[:-1])
        return int(t)
    except (ValueError, OverflowError):   # OverflowError: "infG"
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 512M, 2G)")


def _path(text: str) -> Path:
    # Path("") is ".": an empty argument (an unset shell variable) would
    # name the current directory.
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def _count(low: int, says: str):
    """An argparse type: an int of at least *low*, else "not *says*"."""
    def count(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = low - 1
        if n < low:
            raise argparse.ArgumentTypeError(f"not {says}: {text!r}")
        return n
    return count


_positive = _count(1, "a positive count")
_not_negative = _count(0, "a count (0 or more)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="buddyscope", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"buddyscope {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    snap = sub.add_parser("snapshot", help="read the allocator state: tables, lists, JSON or a file")
    _source_arguments(snap)
    snap.add_argument("-o", "--output", type=_path, help="write the snapshot (gzip'd JSON; .json: plain)")
    snap.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    snap.add_argument("--lists", action="store_true",
                      help="also print every non-empty list with its PFNs in order")

    rec = sub.add_parser(
        "record", help="a snapshot plus every kmem page event after it, as a fixture",
        usage="buddyscope record (--lab SERIES --workload FILE | --live [--vmlinux FILE] -- COMMAND...) -o FIXTURE"
              "\n       buddyscope record --restore")
    where = rec.add_mutually_exclusive_group(required=True)
    where.add_argument("--lab", metavar="SERIES", help="record on a lab guest of this kernel")
    where.add_argument("--live", action="store_true",
                       help="record this kernel while COMMAND runs (root, tracefs, /proc/kcore, "
                            "debug info; best effort: it cannot be paused)")
    where.add_argument("--restore", action="store_true",
                       help="put back the tracing state a killed `record --live` left on this "
                            "machine (the next record does it too)")
    rec.add_argument("--workload", type=_path, metavar="FILE",
                     help="with --lab: shell script run in the guest as `FILE prepare` (untraced; "
                          "exit 2: not applicable) and `FILE run` (traced)")
    rec.add_argument("--vmlinux", type=_path, metavar="FILE",
                     help="with --live: the running kernel's vmlinux (default: found by build ID)")
    rec.add_argument("--smp", type=_positive, default=1, help="vCPUs (default 1)")
    rec.add_argument("--mem", type=_size, default=512, help="memory (default 512M)")
    rec.add_argument("--buffer-kb", type=_positive, default=32768, help="ring buffer per CPU (KiB)")
    rec.add_argument("-o", "--output", type=_path, help="the fixture file to write (required)")
    rec.add_argument("live_command", nargs=argparse.REMAINDER, metavar="COMMAND",
                     help="with --live: the command to trace, after `--`")

    pr = sub.add_parser("predict", help="the next allocations the kernel will make for a request")
    _source_arguments(pr)
    pr.add_argument("--after", type=_path, metavar="TRACE",
                    help="first apply these events (ftrace text, or a fixture's trace)")
    pr.add_argument("--order", type=int, required=True, help="allocation order")
    req = pr.add_mutually_exclusive_group(required=True)
    req.add_argument("--gfp", metavar="FLAGS", help="gfp mask, e.g. GFP_KERNEL|__GFP_ZERO")
    req.add_argument("--migratetype", metavar="NAME", help="Unmovable, Movable or Reclaimable")
    pr.add_argument("--cpu", type=int, default=0, help="the CPU allocating (default 0)")
    pr.add_argument("-n", type=_positive, default=1, help="how many allocations (default 1)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--profile", metavar="SERIES", help="override the kernel profile")

    _why_parser(sub)

    rp = sub.add_parser("replay", help="score the model against a recorded trace")
    rp.add_argument("fixture", nargs="?", type=_path, help="a fixture (snapshot + trace)")
    rp.add_argument("--snapshot", type=_path, metavar="FILE", help="a snapshot file (with --trace)")
    rp.add_argument("--trace", type=_path, metavar="FILE", help="ftrace text of the events after it")
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    rp.add_argument("--strict", action="store_true",
                    help="stop at the first event that contradicts the model, or line that "
                         "cannot be read (default: count and report them, and go on)")
    rp.add_argument("--misses", type=_not_negative, default=20, metavar="N", help="misses to list (default 20)")
    rp.add_argument("--profile", metavar="SERIES", help="override the kernel profile")
    rp.add_argument("--stream", action="store_true",
                    help="replay without holding the trace's events in memory (reads the trace "
                         "several times; the same results)")
    rp.add_argument("--records", type=int, metavar="N",
                    help="keep only the last N allocation records and every miss (implies "
                         "--stream; --json then lists those)")

    tui = sub.add_parser("tui", help="the TUI on a source, a snapshot file or a recording (replay)")
    _source_arguments(tui)
    tui.add_argument("--interval", type=float, metavar="SECONDS",
                     help="seconds between reads (default: 2 for live, QMP and procfs, 3 for "
                          "--lab; 0: off)")
    lab_tui = tui.add_argument_group(
        "traced lab guest (--lab): boot it, trace its kmem events, and check after each "
        "refresh which predictions came true")
    lab_tui.add_argument("--lab", metavar="SERIES", help="boot a lab guest of this kernel")
    lab_tui.add_argument("--smp", type=_positive, help="with --lab: vCPUs (default 1)")
    lab_tui.add_argument("--mem", type=_size, help="with --lab: memory (default 512M)")
    lab_tui.add_argument("--workload", type=_path, metavar="FILE",
                         help="with --lab: shell script run in the guest as `FILE prepare`, "
                              "then `FILE run` in the background, again and again")

    _find_diff_parsers(sub)
    _metrics_parser(sub)

    lab = sub.add_parser("lab", help="real Debian kernels under QEMU")
    labsub = lab.add_subparsers(dest="lab_command", parser_class=_Parser, required=True)
    f = labsub.add_parser(
        "fetch", help="fetch the newest Debian kernel of a series with its -dbg vmlinux"
    )
    f.add_argument("series", nargs="+", help="5.10, 6.1, 6.12, 7.2, or a Debian suite name")
    labsub.add_parser("list", help="the kernels in the cache, with sizes")
    s = labsub.add_parser("shell", help="boot a guest and open a shell in it")
    s.add_argument("series", help="a cached kernel: series, suite or release")
    s.add_argument("--smp", type=_positive, default=1, help="vCPUs (default 1)")
    s.add_argument("--mem", type=_size, default=512, help="memory (default 512M)")
    return p


def _source_arguments(p: argparse.ArgumentParser) -> None:
    """The source options shared by every command that reads a kernel."""
    p.add_argument("file", nargs="?", type=_path, help="a saved snapshot (or fixture) file")
    g = p.add_argument_group("source (one of)")
    g.add_argument("--live", action="store_true", help="this kernel, through /proc/kcore (root)")
    g.add_argument("--vmcore", type=_path, metavar="FILE", help="an ELF or kdump vmcore")
    g.add_argument("--qmp", type=_path, metavar="SOCKET", help="a QEMU guest's QMP socket (drgn)")
    g.add_argument("--procfs", action="store_true", help="counts only, from /proc (no debug info)")
    p.add_argument("--pause", type=_path, metavar="SOCKET",
                   help="with --qmp: a control QMP socket to stop the guest during the read")
    p.add_argument("--vmlinux", type=_path, metavar="FILE", help="debug info of the target kernel")


def _find_diff_parsers(sub) -> None:
    """``find`` and ``diff``."""
    fd = sub.add_parser("find", help="where a page is: free list or pcp list, position, block, "
                                     "pageblock type, struct page",
                        usage="buddyscope find [FILE | --live | --vmcore FILE | --qmp SOCKET] "
                              "PFN|ADDRESS [--json]")
    _source_arguments(fd)
    fd.add_argument("page", metavar="PFN|ADDRESS",
                    help="a PFN (decimal or 0x hex) or the address of a struct page")
    fd.add_argument("--json", action="store_true", help="print JSON")
    df = sub.add_parser("diff", help="what changed between two snapshots of one kernel")
    df.add_argument("a", type=_path, metavar="A", help="a snapshot (or fixture) file")
    df.add_argument("b", type=_path, metavar="B", help="a later snapshot of the same kernel")
    df.add_argument("--json", action="store_true", help="print JSON")
    df.add_argument("--limit", type=_positive, default=20, metavar="N",
                    help="blocks listed per kind and zone (default 20)")


def _metrics_parser(sub) -> None:
    mt = sub.add_parser("metrics", help="Prometheus metrics: free blocks, pcp, watermarks, "
                                        "fragmentation indices (printed, or served with --listen)")
    _source_arguments(mt)
    mt.add_argument("--listen", metavar="ADDR:PORT",
                    help="serve /metrics here, reading the source at each scrape")
    mt.add_argument("-o", "--output", type=_path, metavar="FILE",
                    help="write FILE (under a temporary name, renamed into place) instead of "
                         "printing: for node_exporter's textfile collector, FILE.prom")
    mt.add_argument("--openmetrics", action="store_true",
                    help="print OpenMetrics text instead of the Prometheus text format "
                         "(node_exporter's textfile collector reads the latter)")


def _source_spec(args):
    from buddyscope.wiring import source_spec

    return source_spec(args)


def _snapshot(args) -> int:
    from buddyscope.model.report import format_snapshot
    from buddyscope.probe.sources import open_source
    from buddyscope.progress import phases

    with open_source(_source_spec(args)) as source:
        # A big state takes a while to walk: a spinner on a terminal only.
        with phases(None if args.file is None and not args.procfs else False, plain=False) as log:
            log("reading the allocator state")
            snap = source.snapshot()
    if args.output:
        try:
            snap.save(args.output)
        except OSError as e:
            raise BuddyscopeError(f"cannot write {args.output}: {e.strerror or e}") from None
        print(f"wrote {args.output}: {snap.kernel.release}, {len(snap.zones)} zones, "
              f"{sum(len(l) for z in snap.zones for a in z.free_area for l in (a.free_list or []))} "
              f"free-list entries, {len(snap.capture.anomalies)} anomalies", file=sys.stderr)
    if args.json:
        # Streamed: json.dumps' text, PFN lists a chunk at a time.
        snap.write_json(sys.stdout)
        sys.stdout.write("\n")
    elif not args.output:
        print(format_snapshot(snap, lists=args.lists))
    return 0


def _profile(args, snap):
    """``--profile``'s profile, None without it; a note when it is not the
    one *snap*'s own kernel types give (a study, or a mistake)."""
    from buddyscope.model.profile import profile_named

    if not args.profile:
        return None
    forced = profile_named(args.profile)
    try:
        own = _own_profile(snap)
    except BuddyscopeError:
        return forced   # none detected (an old 6.12+ file): --profile is what it asks for
    if forced.name != own.name:
        print(f"buddyscope: note: profile {forced.name} on a snapshot of {snap.kernel.release}, "
              f"whose own is {own.name}", file=sys.stderr)
    return forced


def _own_profile(snap):
    """The profile *snap*'s kernel types give (from the counts alone for
    procfs)."""
    from buddyscope.model.profile import detect_profile, detect_profile_from_counts

    return detect_profile(snap) if snap.has_pfns else detect_profile_from_counts(snap)


def _predict(args) -> int:
    import json

    from buddyscope.model.load import load_trace
    from buddyscope.model.predict import format_outcomes, model_after, predict_request
    from buddyscope.model.request import make_request
    from buddyscope.probe.sources import open_source

    # A file source reads a fixture's snapshot too (model.load.load_snapshot).
    with open_source(_source_spec(args)) as source:
        snap = source.snapshot()
    events = load_trace(args.after, snap) if args.after else None
    alloc = model_after(snap, events, _profile(args, snap))
    req = make_request(alloc, args.order, args.cpu, gfp=args.gfp, migratetype=args.migratetype)
    outcomes = predict_request(alloc, req, args.n)
    if args.json:
        json.dump({"kernel": snap.kernel.release, "profile": alloc.profile.name,
                   "request": {"order": req.order, "gfp": req.gfp_text, "cpu": req.cpu,
                               "migratetype": alloc.mt_names[req.migratetype]},
                   "after_events": len(events or ()),
                   "results": [{"pfn": o.pfn, "zone": o.zone, "path": o.kind,
                                "steps": [s.describe() for s in o.path],
                                "refill": o.refill} for o in outcomes],
                   **_unpredictable_json(snap)}, sys.stdout)
        print()
    else:
        print(f"kernel {snap.kernel.release}, profile {alloc.profile.name}"
              + (f", after {len(events)} events of {args.after}" if events is not None else ""))
        _say_unpredictable(snap)
        print(format_outcomes(outcomes, req))
    return 0


def _unpredictable_json(snap) -> dict:
    """``unpredictable`` (names) and ``exact_prediction_off`` (why) for JSON output."""
    from buddyscope.model.unpredictable import unpredictable_reasons

    names = list(snap.kernel.unpredictable)
    return {"unpredictable": names, "exact_prediction_off": unpredictable_reasons(names)}


def _say_unpredictable(snap) -> None:
    """One line when the snapshot's kernel makes exact prediction impossible."""
    from buddyscope.model.unpredictable import unpredictable_summary

    line = unpredictable_summary(snap.kernel.unpredictable)
    if line:
        print(f"WARNING: {line}")


def _why_parser(sub) -> None:
    w = sub.add_parser(
        "why", help="why a request fails (or succeeds): the allocator's decisions on a state",
        usage="buddyscope why SOURCE (--order N --gfp FLAGS [--cpu C] | --from-log) [--json]")
    _source_arguments(w)
    w.add_argument("--order", type=int, help="allocation order")
    w.add_argument("--gfp", metavar="FLAGS", help="gfp mask, e.g. GFP_KERNEL|__GFP_COMP or 0x40dc0")
    w.add_argument("--cpu", type=int, default=None, help="the CPU allocating (default 0)")
    w.add_argument("--from-log", action="store_true",
                   help="explain the last 'page allocation failure' in the kernel's log "
                        "(--live, --vmcore or --qmp)")
    w.add_argument("--json", action="store_true", help="print JSON")
    w.add_argument("--profile", metavar="SERIES", help="override the kernel profile")


def _why(args) -> int:
    import json

    from buddyscope.model.why import explain, format_explanation
    from buddyscope.probe.sources import open_source

    if args.from_log:
        if args.order is not None or args.gfp is not None:
            raise BuddyscopeError("--from-log reads the order and gfp mask from the log: "
                                  "not with --order or --gfp")
    elif args.order is None or args.gfp is None:
        raise BuddyscopeError("why needs --order N and --gfp FLAGS, or --from-log")
    failure = None
    with open_source(_source_spec(args)) as source:
        if args.from_log:
            failure = _log_failure(source)
        snap = source.snapshot()
    profile = _profile(args, snap)
    guessed = profile is None and not snap.has_pfns
    if profile is None:
        profile = _own_profile(snap)
    order, gfp, cpu = args.order, args.gfp, args.cpu
    if failure is not None:
        order, gfp = failure.order, hex(failure.gfp_mask)
        cpu = failure.cpu if cpu is None and failure.cpu is not None else cpu
    e = explain(snap, profile, order, gfp, 0 if cpu is None else cpu)
    if guessed:
        e.notes.append(f"profile {profile.name} guessed from what /proc/zoneinfo prints "
                       "(--profile overrides it)")
    if failure is not None:
        e.notes.insert(0, f"from the log: {failure.text.strip()} (cpu "
                          f"{'not logged: 0' if failure.cpu is None else failure.cpu}, "
                          f"{failure.timestamp / 1e9:.3f} s after boot)")
    if args.json:
        d = e.to_dict()
        if failure is not None:
            d["log"] = {"text": failure.text, "order": failure.order, "gfp_mask": failure.gfp_mask,
                        "cpu": failure.cpu, "timestamp_ns": failure.timestamp}
        json.dump(d, sys.stdout)
        print()
    else:
        print(format_explanation(e))
    return 0


def _log_failure(source):
    """The last warn_alloc record of a drgn source's printk buffer."""
    prog = getattr(source, "prog", None)
    if prog is None:
        raise BuddyscopeError(f"--from-log reads the kernel's printk buffer with drgn: give "
                              f"--live, --vmcore or --qmp, not a {source.kind} source")
    import drgn

    from buddyscope.probe.printk import last_alloc_failure

    try:
        failure = last_alloc_failure(prog)
    except (drgn.FaultError, LookupError, ValueError) as e:
        raise BuddyscopeError(f"cannot read the kernel's printk buffer: {e}") from None
    if failure is None:
        raise BuddyscopeError("the kernel's log has no 'page allocation failure' message")
    return failure


def _replay(args) -> int:
    from buddyscope.model.load import load_recording, load_snapshot, parse_trace

    if args.fixture and (args.snapshot or args.trace):
        raise BuddyscopeError("give a fixture, or --snapshot with --trace, not both")
    if args.stream or args.records is not None:
        return _replay_stream(args)
    if args.fixture:
        rec = load_recording(args.fixture, strict=args.strict)
        snap, parsed = rec.snapshot, rec.parsed
        enabled = rec.fixture.provenance.get("events_enabled")
    elif args.snapshot and args.trace:
        snap = load_snapshot(args.snapshot)
        parsed = parse_trace(args.trace, snap, strict=args.strict)
        enabled = None
    else:
        raise BuddyscopeError("replay needs a fixture, or --snapshot FILE --trace FILE")
    rep = _replay_with_progress(snap, parsed.events, args, enabled)
    rep.add_skipped(parsed.bad, [(b.lineno, b.why) for b in parsed.bad_lines])
    _print_replay(rep, snap, args)
    return 0


def _find(args) -> int:
    import json

    from buddyscope.model.find import find_page, format_found, parse_pfn_or_addr, zone_spans
    from buddyscope.probe.sources import open_source

    value = parse_pfn_or_addr(args.page)  # bad text fails before the source is read
    with open_source(_source_spec(args)) as source:
        snap = source.snapshot()
    found = find_page(snap, value)
    if found.where == "no zone":
        raise BuddyscopeError(f"PFN {found.pfn:#x} is in no zone of the snapshot ({zone_spans(snap)})")
    if args.json:
        json.dump({"kernel": snap.kernel.release, **found.to_dict()}, sys.stdout)
        print()
    else:
        print(format_found(found))
    return 0


def _diff(args) -> int:
    import json

    from buddyscope.model.diff import diff_snapshots, format_diff
    from buddyscope.model.snapshot import Snapshot

    snaps = []
    for path in (args.a, args.b):
        if not path.exists():
            raise BuddyscopeError(f"{path}: no such file")
        snaps.append(Snapshot.load(path))
    d = diff_snapshots(*snaps)
    if args.json:
        json.dump(d.to_dict(), sys.stdout)
        print()
    else:
        print(format_diff(d, args.limit))
    return 0


def _metrics(args) -> int:
    import dataclasses

    from buddyscope import metrics
    from buddyscope.probe.sources import open_source

    if not any((args.file, args.live, args.vmcore, args.qmp, args.procfs)):
        args.procfs = True  # counts from /proc: no root, no debug info needed
    if args.listen:
        metrics.parse_listen(args.listen)  # bad input fails before the source is opened
    # Each scrape reads the source: a file too, again when it changed.
    with open_source(dataclasses.replace(_source_spec(args), reread=True)) as source:
        registry = metrics.make_registry(source.snapshot, source.kind,
                                         log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.listen:
            if args.output:
                raise BuddyscopeError("--listen serves the metrics; -o writes them once: not both")
            metrics.serve(registry, args.listen, lambda m: print(f"buddyscope: {m}", file=sys.stderr))
        elif args.output:
            metrics.write_atomically(args.output, metrics.render(registry, args.openmetrics))
        else:
            sys.stdout.buffer.write(metrics.render(registry, args.openmetrics))
            sys.stdout.flush()
    return 0


def _replay_stream(args) -> int:
    """``replay --stream``: the trace read as it is replayed, never held."""
    from buddyscope.model.fixture import Fixture
    from buddyscope.model.load import is_fixture, load_snapshot
    from buddyscope.model.streaming import TraceSource, replay_stream

    if args.records is not None and args.records < 0:
        raise BuddyscopeError(f"--records {args.records}: give 0 or more")
    enabled = None
    if args.fixture:
        if not args.fixture.exists():
            raise BuddyscopeError(f"{args.fixture}: no such file")
        fx = Fixture.load(args.fixture)
        snap, enabled = fx.snapshot, fx.provenance.get("events_enabled")
        source = TraceSource(args.fixture, lines=fx.trace, strict=args.strict)
    elif args.snapshot and args.trace:
        snap = load_snapshot(args.snapshot)
        if not args.trace.exists():
            raise BuddyscopeError(f"{args.trace}: no such file")
        if is_fixture(args.trace):
            fx = Fixture.load(args.trace)
            if fx.snapshot.kernel.release != snap.kernel.release:
                raise BuddyscopeError(f"{args.trace} is a trace of {fx.snapshot.kernel.release}, "
                                      f"the snapshot is of {snap.kernel.release}")
            source = TraceSource(args.trace, lines=fx.trace, strict=args.strict)
        else:
            source = TraceSource(args.trace, strict=args.strict)
    else:
        raise BuddyscopeError("replay needs a fixture, or --snapshot FILE --trace FILE")
    rep = replay_stream(snap, source, _profile(args, snap), strict=args.strict,
                        events_enabled=enabled, records=args.records)
    _print_replay(rep, snap, args)
    return 0


def _print_replay(rep, snap, args) -> None:
    """A replay's report, as text or ``--json``, with what makes the kernel unpredictable."""
    import json

    from buddyscope.model.replay import format_report

    if args.json:
        json.dump({**rep.to_dict(), **_unpredictable_json(snap)}, sys.stdout)
        print()
    else:
        _say_unpredictable(snap)
        print(format_report(rep, args.misses))


def _replay_with_progress(snap, events, args, events_enabled=None):
    """``replay``, with a progress bar on a terminal for a long trace."""
    from buddyscope.model.replay import Replayer, replay
    from buddyscope.progress import replay_progress

    with replay_progress(len(events)) as after_event:
        if after_event is None:
            return replay(snap, events, _profile(args, snap), strict=args.strict,
                          events_enabled=events_enabled)
        r = Replayer(snap, _profile(args, snap), strict=args.strict, events_enabled=events_enabled)
        r.after_event = after_event
        return r.run(list(events))


def _check_writable(path: Path) -> None:
    """Refuse, before a recording of minutes, an output it could not write
    (as :func:`~buddyscope.model._atomic.write_atomic` will write it)."""
    from buddyscope.model._atomic import in_place

    if in_place(path):   # /dev/stdout, a FIFO
        return
    path = Path(os.path.realpath(path))
    parent = path.parent
    if path.is_dir():
        raise BuddyscopeError(f"{path} is a directory: give -o a file name")
    if not parent.is_dir():
        raise BuddyscopeError(f"cannot write {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BuddyscopeError(f"cannot write {path}: {parent} is not writable")


def _record(args) -> int:
    from buddyscope.progress import phases

    with phases() as log:
        return _record_with(args, log)


def _record_with(args, log) -> int:
    from buddyscope.lab import record

    command = args.live_command[1:] if args.live_command[:1] == ["--"] else args.live_command
    if args.restore:
        if args.output is not None or command or args.workload is not None:
            raise BuddyscopeError("--restore takes no -o, --workload or command")
        print(record.restore_live())
        return 0
    if args.output is None:
        raise BuddyscopeError("record needs -o FIXTURE")
    if args.live:
        if args.workload is not None:
            raise BuddyscopeError("--workload is for --lab; with --live give the command after --")
        if command:   # (without one, record_live says so first)
            _check_writable(args.output)
        fixture = record.record_live(command, vmlinux=args.vmlinux, buffer_kb=args.buffer_kb,
                                     log=log)
        what = f"{fixture.snapshot.kernel.release} (live, best effort)"
    else:
        from buddyscope.lab import kernels

        if args.workload is None:
            raise BuddyscopeError("--lab needs --workload FILE")
        if command:
            raise BuddyscopeError("a command after -- is for --live; with --lab use --workload FILE")
        kernel = kernels.resolve_kernel(args.lab)
        _check_writable(args.output)
        fixture = record.record_lab(kernel, args.workload, smp=args.smp, mem_mib=args.mem,
                                    buffer_kb=args.buffer_kb, log=log)
        what = f"{kernel.release}, {args.smp} vCPU"
    try:
        fixture.save(args.output)
    except OSError as e:
        raise BuddyscopeError(f"cannot write {args.output}: {e.strerror or e}") from None
    counts = fixture.provenance["event_counts"]
    print(f"wrote {args.output}: {what}, {len(fixture.trace)} events ("
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + ")")
    overlap = fixture.provenance.get("boundary_overlap_events")
    if overlap:
        kept = fixture.provenance.get("boundary_overlap_kept", 0)
        print(f"  note: {sum(overlap.values())} events were traced while the snapshot was read "
              f"({kept} it did not show yet were kept); the boundary is approximate",
              file=sys.stderr)
    torn = fixture.provenance.get("boundary_torn")
    if torn:
        print(f"  note: every read caught a list changing under the walk ({', '.join(torn[:3])}"
              f"{', ...' if len(torn) > 3 else ''}): replay will miss on those lists; "
              "record again when the host is quieter", file=sys.stderr)
    return 0


def _tui(args) -> int:
    # "nan" passes a test of < 0 and hung the refresh timer; "inf" never fires.
    if args.interval is not None and not 0 <= args.interval < float("inf"):
        raise BuddyscopeError(f"--interval must be a number of seconds, 0 (off) or more, not {args.interval:g}")
    if args.lab is not None:
        return _tui_lab(args)
    for opt, v in (("--smp", args.smp), ("--mem", args.mem), ("--workload", args.workload)):
        if v is not None:
            raise BuddyscopeError(f"{opt} goes with --lab")
    return _run_tui(_source_spec(args), "", args.interval)


def _tui_lab(args) -> int:
    """``tui --lab SERIES``: boot a guest (in this thread: it dies with the
    thread that booted it), trace it, run the TUI, shut the guest down."""
    from buddyscope.lab.kernels import resolve_kernel
    from buddyscope.wiring import open_lab_session

    chosen = [n for n, v in (("FILE", args.file), ("--live", args.live), ("--vmcore", args.vmcore),
                             ("--qmp", args.qmp), ("--procfs", args.procfs),
                             ("--pause", args.pause), ("--vmlinux", args.vmlinux)) if v]
    if chosen:
        raise BuddyscopeError(f"--lab boots its own guest: it does not go with {chosen[0]}")
    if args.workload is not None and not args.workload.is_file():
        raise BuddyscopeError(f"{args.workload}: no such workload file")
    kernel = resolve_kernel(args.lab)
    _need_terminal()
    log = lambda m: print(f"  {m}", file=sys.stderr)  # noqa: E731
    log(f"booting {kernel.release} ...")
    return _run_tui(None, "", args.interval, lambda: open_lab_session(
        kernel, smp=args.smp or 1, mem_mib=args.mem or 512, workload=args.workload, log=log))


def _need_terminal() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BuddyscopeError("the TUI needs a terminal; `buddyscope snapshot` prints the tables")


def _run_tui(spec, why: str, interval=None, opener=None) -> int:
    from buddyscope.wiring import session_loader

    # What can be checked at once fails here, in one line; the source itself
    # (a big file, drgn's debug info) is opened by the TUI, behind its first
    # frame. A lab guest is booted here: it dies with the thread that booted it.
    session = opener() if opener is not None else session_loader(spec, why)
    app = None
    try:
        _need_terminal()
        from buddyscope.tui.app import BuddyscopeApp

        kw = {} if interval is None else {"interval": interval or None}
        app = BuddyscopeApp(session, **kw)
        app.run()
    finally:
        opened = session if opener is not None else (app.session if app is not None else None)
        if opened is not None:
            opened.close()
    if app.load_error is not None:
        raise BuddyscopeError(app.load_error)
    return 0


def _main_job(parser: argparse.ArgumentParser) -> int:
    """``buddyscope`` alone: the TUI on the best source there is; when
    stdout is not a terminal, the snapshot tables of that source."""
    from buddyscope.model.report import format_snapshot
    from buddyscope.probe.sources import open_source
    from buddyscope.wiring import best_source_spec

    try:
        spec, why = best_source_spec()
        if sys.stdin.isatty() and sys.stdout.isatty():
            return _run_tui(spec, why)
        with open_source(spec) as source:
            snap = source.snapshot()
    except BuddyscopeError as e:
        print(f"buddyscope: error: {e}", file=sys.stderr)
        return 1
    try:
        print(f"buddyscope: showing {why}; on a terminal this opens the TUI. "
              f"`buddyscope --help` lists the commands.\n")
        print(format_snapshot(snap))
    except BrokenPipeError:
        sys.stderr.close()
    return 0


def _lab_fetch(args) -> int:
    from buddyscope.lab import hostroot, kernels

    from buddyscope.progress import phases

    for spec in args.series:
        t0 = time.monotonic()
        with phases() as log:
            k = kernels.fetch(spec, log=log)
            # What a guest needs to mount this machine's root (the live path's lab tests).
            hostroot.share_modules(k, log=log)
        print(f"{k.release}  series {k.series}  {k.suite}  {k.size() / 2**20:.0f} MiB  "
              f"({time.monotonic() - t0:.1f} s)  {k.directory}")
    try:
        kernels.find_busybox()
    except BuddyscopeError:
        with phases() as log:
            path = kernels.fetch_busybox(log=log)
        print(f"busybox  {path}")
    return 0


def _lab_list(args) -> int:
    from buddyscope.lab import kernels

    ks = kernels.cached_kernels()
    if not ks:
        print(f"no kernels cached in {kernels.cache_root()}; run: buddyscope lab fetch 6.1")
        return 0
    print(f"{'RELEASE':<28} {'SERIES':<6} {'SUITE':<9} {'SIZE':>8}  VERSION")
    total = 0
    for k in ks:
        size = k.size()
        total += size
        print(f"{k.release:<28} {k.series:<6} {k.suite:<9} {size / 2**20:7.0f}M  {k.version}")
    print(f"{len(ks)} kernels, {total / 2**20:.0f} MiB in {kernels.cache_root() / 'kernels'}")
    return 0


def _lab_shell(args) -> int:
    from buddyscope.lab import kernels
    from buddyscope.lab.guest import Guest
    from buddyscope.lab.shell import interactive_console

    kernel = kernels.resolve_kernel(args.series)
    with Guest.boot(kernel, smp=args.smp, mem_mib=args.mem) as guest:
        print(f"{kernel.release}: {args.smp} vCPU, {args.mem} MiB, booted in "
              f"{guest.boot_seconds:.1f} s", file=sys.stderr)
        print(f"  drgn / buddyscope:  --qmp {guest.qmp_path} --pause {guest.pause_path}",
              file=sys.stderr)
        print("  Ctrl-] leaves; `exit` in the guest shuts it down", file=sys.stderr)
        interactive_console(guest)
    return 0


_COMMANDS = {
    ("snapshot", None): _snapshot,
    ("record", None): _record,
    ("predict", None): _predict,
    ("replay", None): _replay,
    ("why", None): _why,
    ("tui", None): _tui,
    ("find", None): _find,
    ("diff", None): _diff,
    ("metrics", None): _metrics,
    ("lab", "fetch"): _lab_fetch,
    ("lab", "list"): _lab_list,
    ("lab", "shell"): _lab_shell,
}


class _Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally``
    runs: tracing restored, a paused guest resumed, QEMU shut down."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    parser = _parser()
    args = parser.parse_args(argv)
    closed = sys.stdout is None
    if closed:
        # Started with stdout closed (>&-): fd 1 is held by a descriptor
        # that cannot be written, so no file opened later takes it. A
        # command that writes only files (-o) works; output fails in one line.
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
        sys.stdout = open(1, "w", closefd=False)
    if args.command is None:
        # (The TUI, when it runs, keeps its own signal handling.)
        def handler(_args):
            return _main_job(parser)
    else:
        handler = _COMMANDS[(args.command, getattr(args, f"{args.command}_command", None))]
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = handler(args)
        # Written out here, where a full disk is one line, not at exit.
        sys.stdout.flush()
        return rc
    except BuddyscopeError as e:
        print(f"buddyscope: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("buddyscope: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("buddyscope: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # The reader (head, less) went away: not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as e:
        # Writing the output failed (stdout on a full disk); any other
        # error a reader did not translate still gets one line.
        if e.filename is None and e.errno in _WRITE_ERRNOS:
            _drop_stdout()
            why = "standard output is closed" if closed and e.errno == errno.EBADF else e.strerror or e
            print(f"buddyscope: error: cannot write output: {why}", file=sys.stderr)
        else:
            where = f"{e.filename}: " if e.filename is not None else ""
            print(f"buddyscope: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


#: What a write to stdout fails with (write(2)), not a connection's errors.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF)


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what it still buffers cannot be written,
    and Python's flush at exit would only fail again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
