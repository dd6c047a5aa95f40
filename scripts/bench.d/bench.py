#!/usr/bin/env python3
"""The runner of scripts/bench: mounts the kernel's overlayfs (also with metacopy=on, for
chown/chmod), fuse-overlayfs and layerfs on the same generated lower layers, and uses the
merged tree materialised as a plain directory as the physical limit; runs every workload
on each (interleaved: kernel, ..., layerfs, plain, kernel, ...), the metadata workloads
also pinned to one CPU, and reports medians with min/max and the ratios of layerfs to the
kernel's overlayfs and to fuse-overlayfs. Started by scripts/bench, which builds what it
needs, owns the temporary directory and unmounts whatever is left under it on exit; see
scripts/bench --help for the options and sizes.

This file reads the options and runs the parts, each beside it: datasets.py (the sizes and
the datasets of gen_layers.py), mounts.py (the targets and their mounts), workloads.py (the
sessions), runner.py (the run's state and its loop), runinfo.py (the machine and the
method), report.py (the tables, results.json and results.csv), common.py (running a
command, the log).
"""

import argparse
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
# The parts beside this file: its directory is on sys.path when it runs as a script, and put
# there for any other way in (python3 -m, an import).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (beside this file, as are the next ones)
from common import Log  # noqa: E402
from datasets import QUICK, WORK_SIZES, env_int  # noqa: E402
from mounts import TARGET_KEYS  # noqa: E402
from runinfo import machine_info, method  # noqa: E402
from runner import Bench  # noqa: E402
from workloads import SESSIONS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", add_help=False)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--layerfs", required=True)
    ap.add_argument("--buildtype", default="?")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--no-pinned", action="store_true")
    ap.add_argument("--ro", action="store_true")
    ap.add_argument("--only")
    ap.add_argument("--targets", default=",".join(TARGET_KEYS))
    ap.add_argument("--data")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_TIMEOUT") or 600))
    args = ap.parse_args()
    if args.only is None:
        # --quick leaves out the one workload that issue 7 does not list (small-file create).
        args.only = ",".join(s[0] for s in SESSIONS if not (args.quick and s[0] == "create"))
    args.only = [s for s in args.only.split(",") if s]
    args.targets = [s for s in args.targets.split(",") if s]
    bad = [s for s in args.only if s not in [x[0] for x in SESSIONS]]
    bad += [s for s in args.targets if s not in TARGET_KEYS]
    if bad:
        sys.exit(f"scripts/bench: unknown benchmark or target: {', '.join(bad)}")
    if args.quick:
        for k, v in QUICK.items():
            os.environ.setdefault(k, str(v))
    if args.reps is None:
        args.reps = int(os.environ.get("BENCH_REPS") or 3)

    os.makedirs(args.results, exist_ok=True)
    log = Log(os.path.join(args.results, "run.log"))
    bench = Bench(args, log)
    bench.sizes = {k: env_int(k, WORK_SIZES) for k in WORK_SIZES}
    # SIGTERM and SIGHUP end the run like Ctrl-C does: through the cleanup below.
    def interrupt(*_):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    info = machine_info(args, args.tmp)
    log("== machine")
    for k, v in info.items():
        log(f"   {k}: {v}")
    try:
        bench.generate()
        bench.setup_targets()
        bench.method_text = method(bench, args)
        for line in bench.method_text:
            log("   " + line)
        start = time.perf_counter()
        bench.run_all()
        elapsed = time.perf_counter() - start
    except KeyboardInterrupt:
        log("\ninterrupted")
        for t in bench.targets:
            t.unmount()
        sys.exit(130)
    finally:
        for t in bench.targets:
            try:
                t.unmount()
            except Exception:  # noqa: BLE001 - the shell's trap is the last resort
                pass

    info["load_average_at_end"] = os.getloadavg()
    report.write(bench, args, info, elapsed)


if __name__ == "__main__":
    main()
