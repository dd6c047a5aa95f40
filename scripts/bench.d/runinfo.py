"""What scripts/bench says about its run besides the numbers: the machine (CPU, memory,
kernel, the filesystem of the datasets, the versions of what is compared) and the method
(how each target is mounted, what is timed and how)."""

import datetime
import os
import platform
import subprocess

from common import HERE, MIB, short


def output_of(*c):
    """The output of command C, stripped; empty when it cannot run."""
    try:
        return subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=20).stdout.strip()
    except OSError:
        return ""


def machine_info(args, tmp):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    fo_version = next((l for l in output_of("fuse-overlayfs", "--version").splitlines()
                       if l.startswith("fuse-overlayfs")), "")
    root = os.path.dirname(os.path.dirname(HERE))
    # git refuses a repository of another user ("dubious ownership"): then the commit is unknown.
    git = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, timeout=20)
    commit = git.stdout.strip() if git.returncode == 0 else "unknown"
    if git.returncode == 0 and output_of("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    tmp_fs = output_of("findmnt", "-n", "-o", "FSTYPE", "--target", tmp)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / (1 << 30), 1),
        "kernel": platform.release(),
        "tmp_fs": tmp_fs,
        "tmp_ext4_journal": ext4_journal(tmp) if tmp_fs == "ext4" else None,
        "tmp_dir": os.path.dirname(tmp),
        "load_average_at_start": os.getloadavg(),
        "layerfs": short(output_of(args.layerfs, "--version")) + f" ({args.layerfs}, {args.buildtype})",
        "layerfs_commit": commit,
        "fuse_overlayfs": fo_version,
        "libfuse": output_of("pkg-config", "--modversion", "fuse3"),
        "python": platform.python_version(),
    }


def ext4_journal(path):
    """Whether the ext4 filesystem under PATH has a journal; None when unknown."""
    device = os.path.basename(os.path.realpath(output_of("findmnt", "-n", "-o", "SOURCE", "--target", path)))
    try:
        with open(f"/sys/fs/ext4/{device}/journal_task") as f:
            return f.read().strip() != "<none>"
    except OSError:
        return None


def method(bench, args):
    """The lines that say how the numbers were made; printed and kept with the results."""
    m = bench.manifest
    d = m["depth"]
    lines = ["== method",
             f"targets, all on the same {len(m['layers'])} lower layers, each mount with a new empty upper"
             f"{' (the reading benchmarks with no upper: --ro)' if args.ro else ''}:"]
    for t in bench.targets:
        if t.is_plain:
            lines.append(f"  {t.title}: {t.unavailable or m['plain']} (the merged tree materialised: the "
                         "physical limit; no mount; writes undone after each run, untimed)")
            continue
        cmd, _ = t.mount_cmd("U", "W")
        cmd[cmd.index("-o") + 1] = ("lowerdir=...,upperdir=U,workdir=W"
                                    + (",metacopy=on" if t.key.endswith("-metacopy") else ""))
        only = " (chown -R and chmod -R only)" if t.key.endswith("-metacopy") else ""
        lines.append(f"  {t.title}{only}: {t.unavailable or ' '.join(cmd)}")
    lines += [
        f"repetitions: {args.reps} of each workload, targets interleaved (A B C A B C ...); the table "
        "shows the median, the min – max table and results.json the spread and every value",
        "cold: sync + echo 3 > /proc/sys/vm/drop_caches, then a fresh mount; fresh mount: unmounted and "
        "mounted again, host caches warm; warm: the same workload again on the same mount; every "
        "workload that writes gets a fresh mount with an empty upper",
        "pinning: each workload runs unpinned; the metadata workloads (walk, chown, chmod, readdir, untar, "
        "rm, create, lookup depth) run again pinned to CPU 0 (taskset -c 0 for the client and the FUSE "
        "daemon), rows marked [pinned]" + (" -- skipped in this run (--no-pinned)" if args.no_pinned else ""),
        "mount time: its own row (mount(8) or the daemon until the mount is there), where an index built "
        "at mount shows; in the lookup-depth rows it is added to the lookups of the existing paths; "
        "whatever the daemon builds lazily counts in the workload that triggers it",
        "timing: CLOCK_MONOTONIC around the workload inside the driver (scripts/bench.d/driver.cpp), "
        "around the process for tar, rm, chown, chmod; fio reports its own IOPS (psync, 4 KiB, "
        f"{bench.sizes['BENCH_RANDREADS']:,} reads, invalidate=0, lower file in the host page cache)",
        "copy-up: append one byte through the mount to a file of the bottom layer; the sparse file's copy "
        "in the upper is checked for holes (st_blocks), the big file's last 4 KiB + 1 byte for content",
        f"lower layers: {m['entries_in_layers']:,} entries, {m['whiteouts']} whiteouts, {m['opaque_dirs']} "
        f"opaque dirs ({m['whiteout_format']} format), {m['rewritten_files']} files rewritten by upper layers; "
        f"the union: {m['merged_entries']:,} entries; big file {m['big']['bytes'] // MIB} MiB of real data"
        f"{' (--quick size; 2048 MiB in a full run)' if m['big']['bytes'] < 2048 * MIB else ''}",
        "workloads run: " + ", ".join(args.only) + ("" if "create" in args.only else
                                                      " (create left out: --quick, or --only)"),
        f"lookup depth: {d['files']:,} files in {d['dirs']} directories spread over {', '.join(map(str, d['depths']))}"
        " layers (every directory in every layer); lstat of all of them and of as many missing names"
        + ("; with the cold rows, each fresh-mount row follows an untimed pass of the same lookups on a"
           " mount of its own, as the cold row before it dropped the caches"
           if bench.root and bench.sizes["BENCH_DEPTH_COLD"] else ""),
    ]
    return lines
