"""The report of scripts/bench: the rows of the table, the medians with the ratios of
layerfs to the others, the min – max spreads, the lookup-depth curve, and the files they go
to in the results directory (table.md, results.json, results.csv; the log has them too).
Each function takes the finished run, b (runner.Bench)."""

import csv
import json
import os
import statistics

from common import MIB
from mounts import TARGET_KEYS
from workloads import SESSIONS, runs_on, session_of

# Ratio columns: (target, against); layerfs metacopy=on only against its kernel peer.
# layerfs-metacopy / fuse-overlayfs: the chown/chmod target is layerfs copying
# metadata only against fuse-overlayfs copying every byte.
RATIO_PAIRS = [("layerfs", "kernel"), ("layerfs", "kernel-metacopy"), ("layerfs", "fuse-overlayfs"),
               ("layerfs-metacopy", "kernel-metacopy"), ("layerfs-metacopy", "fuse-overlayfs")]

# The rows of the table: key, label, unit kind. Kinds: "time" (seconds, lower is better),
# "rate:UNIT" (per second, higher is better), "mem" (bytes, lower
# is better). The lookup-depth rows are added per depth (depth_rows). A pinned run of a
# row has the key KEY@pin.
ROWS = [
    ("walk_cold", "tree walk + lstat, cold (caches dropped, fresh mount)", "time"),
    ("walk_warm", "tree walk + lstat, warm (same mount again)", "time"),
    ("walk_fresh", "tree walk + lstat, fresh mount (host caches warm)", "time"),
    ("mount", "mount (host caches warm)", "time"),
    ("walk_p1", "walk on a fresh mount, 1 process", "time"),
    ("walk_p2", "walk on a fresh mount, 2 processes (each lstats half)", "time"),
    ("rss_hwm", "daemon peak RSS (VmHWM) after the cold and warm walks", "mem"),
    ("rss_node", "daemon RSS per cached node (slope of VmRSS over a walk of the image, one top-level directory at a time)", "mem"),
    ("seq_cold", "sequential read of the big file, cold (caches dropped, fresh mount)", "rate:MiB/s"),
    ("seq_warm", "sequential read of the big file, warm (reopened)", "rate:MiB/s"),
    ("rand", "random 4 KiB reads (fio psync), fresh mount, lower in the host cache", "rate:IOPS"),
    ("create", "small files: create + write + close, new dir", "rate:files/s"),
    ("copyup", "copy-up of the big file: append one byte", "time"),
    ("copyup_sparse", "copy-up of the sparse file: append one byte", "time"),
    ("copyup_alloc", "space the sparse file's copy takes in the upper (st_blocks)", "mem"),
    ("chown", "chown -R of a lower tree", "time"),
    ("chmod", "chmod -R of a lower tree", "time"),
    ("readdir", "ls -f (readdir) of the big directory, cold (caches dropped, fresh mount)", "time"),
    ("readdir_stat", "readdir + lstat of the big directory, warm", "time"),
    ("untar", "untar a tarball into the mount", "time"),
    ("rm_untarred", "rm -rf of the untarred tree", "time"),
    ("rm_lower", "rm -rf of a lower tree (whiteouts)", "time"),
]


def depth_rows(depths):
    rows = []
    for n in depths:
        rows += [
            (f"depth{n}_exist", f"{n} layer{'s' if n != 1 else ''}: mount + lstat of the existing paths, fresh mount", "time"),
            (f"depth{n}_missing", f"{n} layer{'s' if n != 1 else ''}: lstat of the missing paths, same mount", "time"),
        ]
    for n in depths:
        rows += [
            (f"depth{n}_cold_exist", f"{n} layer{'s' if n != 1 else ''}: mount + lstat of the existing paths, cold", "time"),
            (f"depth{n}_cold_missing", f"{n} layer{'s' if n != 1 else ''}: lstat of the missing paths, cold, same mount", "time"),
        ]
    return rows


def all_rows(b):
    """(key, label, kind) of every row that this run can fill: unpinned first, then the
    pinned runs of the metadata workloads."""
    base = ROWS + depth_rows(b.manifest["depth"]["depths"])
    ran = [s for s in SESSIONS if s[0] in b.args.only]
    rows = [r for r in base if session_of(r[0]) in ran]
    pinned = [(f"{k}@pin", f"{text} [pinned]", kind) for k, text, kind in rows
              if True in b.modes(session_of(k)) and k not in ("rss_hwm", "rss_node")]
    return rows + pinned


def cell(b, row, t):
    key = row[0]
    base = key.split("@")[0]
    session = session_of(key)
    if not runs_on(session, t):
        return None, "—"
    if t.unavailable:
        return None, t.unavailable
    fkey = (session[0] + ("@pin" if "@pin" in key else ""), t.key)
    values = b.results.get(key, {}).get(t.key)
    if fkey in b.failures and not values:
        return None, b.failures[fkey]
    if not values:
        if base in ("rss_hwm", "rss_node") and not t.is_fuse:
            return None, "no daemon"
        if base == "mount" and t.is_plain:
            return None, "no mount"
        if base == "copyup_alloc" and t.is_plain:
            return None, "no upper"
        if (base in ("walk_cold", "seq_cold", "readdir") or "_cold_" in base) and not b.root:
            return None, "skipped: dropping caches needs root"
        return None, "no value"
    return statistics.median(values), None


def fmt(kind, v):
    if kind == "time":
        ms = v * 1000
        if ms < 10:
            return f"{ms:.2f} ms"
        if ms < 100:
            return f"{ms:.1f} ms"
        if ms < 10000:
            return f"{ms:.0f} ms"
        return f"{v:.1f} s"
    if kind == "mem":
        return f"{v / MIB:.1f} MiB" if abs(v) >= MIB else f"{v:,.0f} B"
    unit = kind.split(":", 1)[1]
    if v >= 100:
        return f"{v:,.0f} {unit}"
    return f"{v:.3g} {unit}"


def ratio(kind, mine, other):
    if mine is None or other is None or other == 0:
        return "—"
    r = mine / other
    word = {"time": "time", "mem": "mem"}.get(kind, "thrpt")
    return f"{r:.2f}× {word}"


def label(b, key, text):
    m = b.manifest
    base = key.split("@")[0]
    big = f"{m['big']['bytes'] // MIB} MiB"
    extra = {
        "walk_cold": f"{m['merged_entries']:,} entries",
        "seq_cold": big,
        "rand": f"{b.sizes['BENCH_RANDREADS']:,} reads of {big}",
        "create": f"{b.sizes['BENCH_CREATE_FILES']:,} × {b.sizes['BENCH_CREATE_BYTES']} B",
        "copyup": big,
        "copyup_sparse": f"{m['sparse']['bytes'] // MIB} MiB, {m['sparse']['data_bytes'] // MIB} MiB of data",
        "chown": f"{m['meta']['entries']:,} entries",
        "chmod": f"{m['meta']['entries']:,} entries",
        "readdir": f"{m['bigdir']['entries']:,} entries from {m['bigdir']['layers']} layers",
        "untar": f"{m['tar']['files']:,} files, {m['tar']['dirs']:,} dirs",
        "rm_lower": f"{m['rm']['entries']:,} entries",
    }.get(base)
    if base.startswith("depth") and base.endswith("_exist"):
        extra = f"{m['depth']['files']:,} paths"
    return f"{text} ({extra})" if extra else text


def table(b):
    """The table of medians and ratios, the table of min-max spreads, the records."""
    by_key = {t.key: t for t in b.targets}
    cols = [k for k in TARGET_KEYS if k in by_key]
    head = ["benchmark"] + [by_key[k].title for k in cols]
    pairs = [(a, k) for a, k in RATIO_PAIRS if a in by_key and k in by_key]
    head += [f"{by_key[a].title} / {by_key[k].title}" for a, k in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    spread_head = ["benchmark: min – max"] + [by_key[k].title for k in cols]
    spread = ["| " + " | ".join(spread_head) + " |", "|" + "---|" * len(spread_head)]
    records = []
    for row in all_rows(b):
        key, text, kind = row
        if not any(b.results.get(key, {}).get(k) for k in cols) and not any(
                (session_of(key)[0] + ("@pin" if "@pin" in key else ""), k) in b.failures
                for k in cols):
            continue  # nothing ran for this row (e.g. cold rows without root)
        medians = {}
        cells = [label(b, key, text)]
        spread_cells = [text]
        for k in cols:
            v, why = cell(b, row, by_key[k])
            medians[k] = v
            vals = b.results.get(key, {}).get(k, []) if v is not None else []
            cells.append(fmt(kind, v) if v is not None else why)
            spread_cells.append(f"{fmt(kind, min(vals))} – {fmt(kind, max(vals))}"
                                if vals else "—")
            if why == "—":
                continue
            records.append({
                "benchmark": key, "label": label(b, key, text), "pinned": "@pin" in key,
                "unit": {"time": "s", "mem": "bytes"}.get(kind, kind.split(":")[-1]),
                "better": "higher" if kind.startswith("rate") else "lower",
                "target": k, "median": v, "min": min(vals) if vals else None,
                "max": max(vals) if vals else None, "n": len(vals), "values": vals,
                "status": "ok" if v is not None else why,
            })
        for a, k in pairs:
            cells.append(ratio(kind, medians.get(a), medians.get(k)))
        lines.append("| " + " | ".join(cells) + " |")
        spread.append("| " + " | ".join(spread_cells) + " |")
    return "\n".join(lines), "\n".join(spread), records


def depth_curve(b):
    """The lookup-depth curve: per target, existing + missing lookups at N layers as a
    multiple of 1 layer (the first depth)."""
    depths = b.manifest["depth"]["depths"]
    cols = [t for t in b.targets if not t.unavailable and runs_on(session_of("depth1_exist"), t)]
    out = []
    curves = {}
    for variant, mode in (("", "fresh mount"), ("_cold", "cold"), ("@pin", "fresh mount, pinned")):
        lines = []
        for t in cols:
            vals = []
            for n in depths:
                suffix = "@pin" if variant == "@pin" else ""
                tag = f"depth{n}{'_cold' if variant == '_cold' else ''}"
                e = b.results.get(f"{tag}_exist{suffix}", {}).get(t.key)
                mi = b.results.get(f"{tag}_missing{suffix}", {}).get(t.key)
                vals.append(statistics.median(e) + statistics.median(mi) if e and mi else None)
            if vals[0] is None:
                continue
            curves.setdefault(mode, {})[t.key] = dict(zip(map(str, depths), vals))
            cells = [f"{v * 1000:.1f} ms ({v / vals[0]:.1f}×)" if v is not None else "—" for v in vals]
            lines.append(f"| {t.title} | " + " | ".join(cells) + " |")
        if lines:
            out.append(f"lookup-depth curve, {mode}: mount + lstat of {b.manifest['depth']['files']:,} "
                       f"existing + {b.manifest['depth']['files']:,} missing paths (× the time at "
                       f"{depths[0]} layer{'s' if depths[0] != 1 else ''})")
            out.append("")
            out.append("| target | " + " | ".join(f"{n} layer{'s' if n != 1 else ''}" for n in depths) + " |")
            out.append("|" + "---|" * (len(depths) + 1))
            out += lines
            out.append("")
    return "\n".join(out), curves


def write(b, args, info, elapsed):
    """Prints the report (to the log too) and writes table.md, results.json and results.csv."""
    log = b.log
    medians, spread, records = table(b)
    curve, curves = depth_curve(b)
    if not b.sizes["BENCH_DEPTH_COLD"] and "depth" in args.only:
        b.notes.append("the lookup-depth rows ran on fresh mounts only, not cold (BENCH_DEPTH_COLD=0, "
                           "the --quick default)")
    busy = max(info["load_average_at_start"][0], info["load_average_at_end"][0])
    if busy > (os.cpu_count() or 1) / 2:
        b.notes.append(f"the machine was busy (load average up to {busy:.1f} on {os.cpu_count()} CPUs): "
                           "other work shared the CPUs, expect noise")
    if info.get("tmp_ext4_journal") is False:
        b.notes.append(f"{info['tmp_dir']} is ext4 without a journal: there an inode is allocated "
                       "past every inode freed in the last minute or more, so files created after "
                       "many deletions (untar, chown/chmod copy-ups) cost more on every target, "
                       "and those rows vary between runs (README, Benchmarks)")
    legend = ("ratios: layerfs ÷ the other. \"time\" and \"mem\": < 1 means layerfs is faster or smaller, "
              "> 1 slower or larger; \"thrpt\": > 1 means layerfs has the higher throughput, < 1 lower. "
              "[pinned]: client and daemon on CPU 0 (taskset -c 0). \"—\": the workload is not run on that target.")
    head = (f"layerfs benchmarks, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), "
            f"{info['memory_gib']} GiB, Linux {info['kernel']}, {info['tmp_fs']} under {info['tmp_dir']}; "
            f"median of {args.reps}, targets interleaved{', --quick sizes' if args.quick else ''}"
            f"{', reads without an upper' if args.ro else ''}; load average "
            f"{info['load_average_at_start'][0]:.2f} at start, {info['load_average_at_end'][0]:.2f} at end")
    notes = "\n".join(f"note: {n}" for n in b.notes)
    log("")
    log(head)
    log("")
    log(medians)
    log("")
    log(legend)
    log("")
    log(curve)
    log(spread)
    log("")
    log(notes)
    json_path = os.path.join(args.results, "results.json")
    log(f"\nbenchmarks took {elapsed:.0f} s; table: {os.path.join(args.results, 'table.md')}; JSON: {json_path}")
    with open(os.path.join(args.results, "table.md"), "w") as f:
        f.write("\n\n".join([head, medians, legend, curve, spread, notes,
                              "method:\n" + "\n".join(b.method_text[1:])]) + "\n")
    with open(json_path, "w") as f:
        json.dump({"machine": info, "quick": args.quick, "reps": args.reps, "pinned_runs": not args.no_pinned,
                   "reads_without_upper": args.ro, "method": b.method_text[1:],
                   "sizes": {**b.manifest["sizes"], **b.sizes},
                   "dataset": {k: v for k, v in b.manifest.items() if k not in ("layers",)},
                   "benchmarks_seconds": round(elapsed, 1),
                   "notes": b.notes, "lookup_depth_curve": curves, "results": records}, f, indent=1)
    with open(os.path.join(args.results, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["benchmark", "label", "pinned", "target", "unit", "better", "median", "min", "max", "n",
                    "status"])
        for r in records:
            w.writerow([r["benchmark"], r["label"], r["pinned"], r["target"], r["unit"], r["better"],
                        r["median"], r["min"], r["max"], r["n"], r["status"]])

