#!/usr/bin/env python3
"""How fast a full snapshot is on a large, fragmented state, side by side in
one run:

1. buddyscope's snapshot of a paused guest over QMP (bulk ``struct page``
   reads, links followed in Python);
2. the same lists walked with drgn's ``list_for_each_entry``, one drgn object
   per node, on the same paused guest (the results must be identical);
3. on a vmcore of that paused guest: buddyscope's snapshot, the drgn walk,
   and ``crash -s VMLINUX VMCORE`` running ``kmem -F`` (Debian's ``crash``);
4. that snapshot written and read back in file format 1 (PFN lists as JSON
   numbers) and format 2 (packed arrays): CPU time and size.

    python tests/bench/snapshot_speed.py [--series 6.1] [--mem 4096] [--smp 2] [--keep 24]

Each time is wall clock, with the CPU time of the process (or of crash) in
brackets: on a shared machine the CPU time is the steadier of the two.

The guest is fragmented by tests/bench/fragment.c (compiled here with
``gcc -static``): it faults in nearly all memory and gives back every other
page. Needs root, gcc with a static libc, and the lab kernel in the cache.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import find_vmlinux, resolve_kernel
from buddyscope.probe.layout import get_layout
from buddyscope.probe.reference import list_for_each_entry_pfns, snapshot_pfn_lists
from buddyscope.probe.sources import SourceSpec, open_source

HERE = Path(__file__).resolve().parent


def file_formats(snap, work: Path) -> list[str]:
    """The snapshot written and read back in file format 1 (PFN lists as
    JSON numbers) and format 2 (packed arrays, what ``snapshot -o`` writes),
    side by side: CPU seconds, file size; both read back the same."""
    from buddyscope.model._jsonfile import write_json
    from buddyscope.model.snapshot import Snapshot

    rows, back = [], []
    for fmt in (1, 2):
        path = work / f"format{fmt}.json.gz"
        t = time.process_time()
        write_json(path, {**snap.to_dict(), "format": 1}) if fmt == 1 else snap.save(path)
        t_write = time.process_time() - t
        t = time.process_time()
        back.append(Snapshot.load(path).to_dict()["zones"])
        rows.append(f"snapshot file format {fmt}: write {t_write:.3f} s, read {time.process_time() - t:.3f} s "
                    f"CPU, {path.stat().st_size:,} bytes")
    assert back[0] == back[1] == snap.to_dict()["zones"], "the two formats read back differently"
    return rows + ["(both formats read back the probe's lists, entry for entry)"]


def timed(fn, children=False):
    """(wall seconds, CPU seconds, result): the CPU time of this process
    during the call, or with *children* that of the processes it waited for."""
    t, c = time.perf_counter(), time.process_time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = fn()
    wall = time.perf_counter() - t
    if children:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    else:
        used = time.process_time() - c
    return wall, used, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.1")
    ap.add_argument("--mem", type=int, default=4096, help="guest MiB (default 4096)")
    ap.add_argument("--smp", type=int, default=2, help="guest vCPUs (default 2)")
    ap.add_argument("--keep", type=int, default=24, help="MiB fragment.c leaves available")
    ap.add_argument("--crash-output", type=Path, help="save what crash printed to this file")
    args = ap.parse_args()
    kernel = resolve_kernel(args.series)
    work = Path(tempfile.mkdtemp(prefix="bs-bench-"))
    try:
        subprocess.run(["gcc", "-static", "-O2", "-o", str(work / "fragment"), str(HERE / "fragment.c")],
                       check=True)
        with Guest.boot(kernel, smp=args.smp, mem_mib=args.mem, timeout=600,
                        extra_files={"/bin/fragment": (work / "fragment").read_bytes()}) as g:
            since = g.console_offset()
            t_frag = time.perf_counter()
            g.run(f"fragment {args.keep} > /run/fragment.out 2>&1 &", check=True)
            g.wait_console("fragment: ready", timeout=900, since=since)
            t_frag = time.perf_counter() - t_frag
            g.run("sleep 2")
            with open_source(SourceSpec(find_vmlinux=find_vmlinux, qmp=g.qmp_path)) as src:
                with g.paused():
                    t_fast, c_fast, snap = timed(src.snapshot)
                    t_slow, c_slow, walked = timed(lambda: list_for_each_entry_pfns(src.prog))
                    core = g.dump_vmcore(work / "vmcore")
        entries = sum(len(l) for z in snap.zones for a in z.free_area for l in a.free_list)
        pcp_entries = sum(len(l) for z in snap.zones for p in z.pcp for l in p.lists)
        assert walked == snapshot_pfn_lists(snap), "list_for_each_entry and the snapshot disagree"

        with open_source(SourceSpec(find_vmlinux=find_vmlinux, vmcore=core)) as src:
            t_core_fast, c_core_fast, core_snap = timed(src.snapshot)
            t_core_slow, c_core_slow, core_walked = timed(lambda: list_for_each_entry_pfns(src.prog))
            layout = get_layout(src.prog)
        assert core_walked == walked
        formats = file_formats(snap, work)
        crash_line = "crash: not installed (apt-get install crash)"
        t_crash = None
        if shutil.which("crash"):
            cmds = work / "crash.cmds"
            cmds.write_text("kmem -F\nquit\n")
            t_crash, c_crash, p = timed(lambda: subprocess.run(
                ["crash", "-s", "-i", str(cmds), str(kernel.vmlinux), str(core)],
                capture_output=True, text=True, timeout=900), children=True)
            if args.crash_output:
                args.crash_output.write_text(p.stdout)
            pages = [int(a, 16) for a in re.findall(r"^([0-9a-f]{16})\s*$", p.stdout, re.M)]
            crash_pfns = sorted((a - layout.vmemmap) // layout.sizeof_page for a in pages)
            ours = sorted(p for z in core_snap.zones for a in z.free_area for l in a.free_list for p in l)
            same = "the same blocks as buddyscope" if crash_pfns == ours else "DIFFERENT blocks from buddyscope"
            crash_line = (f"crash kmem -F (vmcore, incl. start-up)  {t_crash:8.3f} s ({c_crash:.3f} s CPU)  "
                          f"({len(pages)} free blocks listed: {same})")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{kernel.release}, {args.mem} MiB, {args.smp} vCPUs: {entries} free-list entries "
          f"(+{pcp_entries} on pcp lists), fragmented in {t_frag:.1f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    print(f"buddyscope snapshot (QMP, paused)       {t_fast:8.3f} s ({c_fast:.3f} s CPU)")
    print(f"drgn list_for_each_entry (QMP, paused)  {t_slow:8.3f} s ({c_slow:.3f} s CPU)   x{t_slow / t_fast:.1f} slower "
          f"(x{c_slow / c_fast:.1f} by CPU)")
    print(f"buddyscope snapshot (vmcore)            {t_core_fast:8.3f} s ({c_core_fast:.3f} s CPU)")
    print(f"drgn list_for_each_entry (vmcore)       {t_core_slow:8.3f} s ({c_core_slow:.3f} s CPU)   "
          f"x{t_core_slow / t_core_fast:.1f} slower (x{c_core_slow / c_core_fast:.1f} by CPU)")
    print(crash_line + (f"   x{t_crash / t_core_fast:.1f} slower (x{c_crash / c_core_fast:.1f} by CPU)"
                        if t_crash else ""))
    print("(both walks gave the same PFNs in the same order, from QMP and from the vmcore)")
    print("\n".join(formats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
