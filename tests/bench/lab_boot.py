#!/usr/bin/env python3
"""Boot time of each cached lab kernel, measured side by side in one run,
with the fetch time and cache size recorded by `buddyscope lab fetch`.

    python tests/bench/lab_boot.py [--series 6.1,7.2] [--runs 3] [--smp 2] [--mem 512]

Boot time is from starting QEMU (-S) to the agent's ready line on ttyS1; the
ratio column compares each kernel with the fastest one of this run.
"""

import argparse
import json
import statistics
import sys

from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import cached_kernels, resolve_kernel


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", help="comma-separated; default: every cached kernel")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--mem", type=int, default=512, help="MiB")
    args = p.parse_args()
    ks = ([resolve_kernel(s) for s in args.series.split(",")] if args.series
          else cached_kernels())
    if not ks:
        print("no lab kernels cached: run `buddyscope lab fetch 6.1`", file=sys.stderr)
        return 1
    rows = []
    for k in ks:
        times = []
        for _ in range(args.runs):
            with Guest.boot(k, smp=args.smp, mem_mib=args.mem) as g:
                times.append(g.boot_seconds)
        manifest = json.loads((k.directory / "manifest.json").read_text())
        rows.append((k, statistics.median(times), min(times), max(times),
                     manifest.get("fetch_seconds"), k.size()))
    fastest = min(r[1] for r in rows)
    print(f"{args.runs} boots each, {args.smp} vCPU, {args.mem} MiB, -accel tcg")
    print(f"{'series':<7}{'release':<24}{'boot median':>12}{'min':>7}{'max':>7}"
          f"{'x fastest':>10}{'fetch':>8}{'cache':>9}")
    for k, med, lo, hi, fetch_s, size in rows:
        fetch = f"{fetch_s:.1f}s" if fetch_s is not None else "?"
        print(f"{k.series:<7}{k.release:<24}{med:>11.2f}s{lo:>6.2f}s{hi:>6.2f}s"
              f"{med / fastest:>10.2f}{fetch:>8}{size / 2**20:>8.0f}M")
    print(f"cache total: {sum(r[5] for r in rows) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
