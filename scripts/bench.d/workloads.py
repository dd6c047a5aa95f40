"""The workloads of scripts/bench, one session each: a session mounts what it needs on one
target, runs its workload there and returns {row key: value}; SESSIONS lists them with the
rows they fill, whether they also run pinned to one CPU and on which targets. Each takes
the run (runner.Bench: the manifest, the sizes, the driver and the pinning) and a target."""

import json
import os
import shutil

from common import MIB, Failed, run
from mounts import METACOPY_KEYS, TARGET_KEYS, Mount, proc_status


def s_walk(b, t):
    out = {}
    entries = b.manifest["merged_entries"]
    if b.root:
        b.drop_caches()
        with Mount(t, b.args.ro) as m:
            base = proc_status(t.pid) if t.pid else None
            r = b.driver("walk", m.path())
            out["walk_cold"] = r["seconds"]
            b.check_count(t, "the walk", r["entries"], entries)
            out["walk_warm"] = b.driver("walk", m.path())["seconds"]
            if t.is_fuse and not b.pinned and t.pid:
                out["rss_hwm"] = proc_status(t.pid, "VmHWM")
    with Mount(t, b.args.ro) as m:
        out["mount"] = m.seconds if not t.is_plain else None
        r = b.driver("walk", m.path())
        out["walk_fresh"] = r["seconds"]
        b.check_count(t, "the walk", r["entries"], entries)
        if not b.root:
            out["walk_warm"] = b.driver("walk", m.path())["seconds"]
            if t.is_fuse and not b.pinned and t.pid:
                out["rss_hwm"] = proc_status(t.pid, "VmHWM")
    return out


def s_rss(b, t):
    """Daemon memory against cached nodes: on a fresh mount the image is walked one top-level
    entry at a time, VmRSS read after each; the row is the slope of the least-squares line
    through those points. The mount and the first walk (threads, buffers) are left out: they
    are not per node."""
    if not t.is_fuse:
        return {}
    points = []
    cached = 0
    with Mount(t, b.args.ro) as m:
        if not t.pid:
            return {}
        for name in sorted(os.listdir(b.manifest["plain"])):
            path = m.path(name)
            if os.path.isdir(path) and not os.path.islink(path):
                cached += b.driver("walk", path)["entries"]
            else:
                os.lstat(path)
                cached += 1
            points.append((cached, proc_status(t.pid)))
    points = points[1:]
    if len(points) < 2:
        raise Failed("the image has too few top-level entries for a slope")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return {"rss_node": sum((x - mean_x) * (y - mean_y) for x, y in points) / spread}


def s_pwalk(b, t):
    out = {}
    for n in (1, 2):
        with Mount(t, b.args.ro) as m:
            out[f"walk_p{n}"] = b.driver("pwalk", n, m.path())["seconds"]
    return out


def s_seq(b, t):
    big = b.manifest["big"]
    out = {}
    if b.root:
        b.drop_caches()
    with Mount(t, b.args.ro) as m:
        for key in ("seq_cold", "seq_warm"):
            r = b.driver("seqread", m.path(big["path"]))
            if r["bytes"] != big["bytes"]:
                raise Failed(f"read {r['bytes']} bytes, the file holds {big['bytes']}")
            if key == "seq_warm" or b.root:
                out[key] = r["bytes"] / MIB / r["seconds"]
    return out


def s_rand(b, t):
    if not shutil.which("fio"):
        raise Failed("fio is not installed")
    big = b.manifest["big"]
    src = os.path.join(b.manifest["plain"], big["path"]) if t.is_plain else b.lower(big["path"])
    b.driver("seqread", src)  # the file in the host's page cache
    n = b.sizes["BENCH_RANDREADS"]
    with Mount(t, b.args.ro) as m:
        p = run(b.pin + ["fio", "--name=randread", f"--filename={m.path(big['path'])}", "--readonly",
                            "--rw=randread", "--bs=4k", "--ioengine=psync", "--invalidate=0",
                            f"--size={big['bytes']}", f"--number_ios={n}", "--randrepeat=0",
                            "--randseed=42", "--output-format=json"], b.timeout, what="fio")
    try:
        job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]["read"]
    except (ValueError, KeyError, IndexError) as e:
        raise Failed(f"fio: no result in its output ({e})") from None
    if job["total_ios"] < n:
        raise Failed(f"fio did {job['total_ios']} reads, not {n}")
    return {"rand": job["iops"]}


def s_create(b, t):
    n = b.sizes["BENCH_CREATE_FILES"]
    with Mount(t) as m:
        r = b.driver("create", m.path("bench-create"), n, b.sizes["BENCH_CREATE_BYTES"])
        if t.is_plain:
            shutil.rmtree(m.path("bench-create"))
    return {"create": r["files"] / r["seconds"]}


def s_copyup(b, t):
    out = {}
    big, sparse = b.manifest["big"], b.manifest["sparse"]
    for rel in (big["path"], sparse["path"]):
        src = os.path.join(b.manifest["plain"], rel) if t.is_plain else b.lower(rel)
        if rel == big["path"]:
            b.driver("seqread", src)  # host cache warm: the copy, not the disk, is timed
    with Mount(t) as m:
        for key, f in (("copyup", big), ("copyup_sparse", sparse)):
            r = b.driver("append", m.path(f["path"]))
            if r["bytes"] != f["bytes"] + 1:
                raise Failed(f"after appending one byte {f['path']} has {r['bytes']} bytes, not "
                             f"{f['bytes'] + 1}")
            out[key] = r["seconds"]
            # The data before the appended byte must be the lower's.
            with open(m.path(f["path"]), "rb") as fh:
                fh.seek(f["bytes"] - 4096)
                tail = fh.read(4097)
            with open(os.path.join(b.manifest["plain"], f["path"]), "rb") as fh:
                fh.seek(f["bytes"] - 4096)
                want = fh.read(4096) + b"!"
            if t.is_plain:
                os.truncate(m.path(f["path"]), f["bytes"])
            if tail != want:
                raise Failed(f"after the copy-up the last 4 KiB + 1 byte of {f['path']} differ from "
                             "the lower file's + the byte appended")
        if m.upper:
            copy = os.path.join(m.upper, sparse["path"])
            if not os.path.exists(copy):
                raise Failed(f"no copy of {sparse['path']} in the upper layer")
            alloc = os.stat(copy).st_blocks * 512
            out["copyup_alloc"] = alloc
            # Data: 1 MiB every 32 MiB and the appended byte (one block, rounded up).
            kept = alloc <= sparse["data_bytes"] + 4 * MIB
            b.note(f"{t.title}: the sparse file's copy-up {'kept' if kept else 'did NOT keep'} its holes "
                      f"({alloc / MIB:.1f} MiB allocated for {sparse['data_bytes'] / MIB:.0f} MiB of data "
                      f"in {sparse['bytes'] / MIB:.0f} MiB)")
    return out


def _meta(b, t, cmd, what, check):
    rel = b.manifest["meta"]["path"]
    with Mount(t) as m:
        seconds = b.timed(cmd + [m.path(rel)], what)
        probe = os.path.join(m.path(rel), "d0000", "f000000")
        st = os.lstat(probe)
        if not check(st):
            raise Failed(f"after {what} {probe} has uid {st.st_uid}, mode {st.st_mode & 0o7777:o}")
        if t.is_plain:  # undo, untimed
            run(["chown", "-R", f"{os.getuid()}:{os.getgid()}", m.path(rel)], b.timeout, what="chown back")
            run(["chmod", "-R", "o+r", m.path(rel)], b.timeout, what="chmod back")
    return seconds


def s_chown(b, t):
    uid = 1 if b.root else os.getuid()
    return {"chown": _meta(b, t, ["chown", "-R", f"{uid}:{uid}"], "chown -R",
                                lambda st: st.st_uid == uid)}


def s_chmod(b, t):
    return {"chmod": _meta(b, t, ["chmod", "-R", "o-r"], "chmod -R",
                                lambda st: not st.st_mode & 0o004)}


def s_readdir(b, t):
    rel = b.manifest["bigdir"]["path"]
    want = b.manifest["bigdir"]["entries"]
    out = {}
    if b.root:
        b.drop_caches()
    with Mount(t, b.args.ro) as m:
        r = b.driver("readdir", m.path(rel))
        b.check_count(t, "readdir of the big directory", r["entries"], want)
        if b.root:
            out["readdir"] = r["seconds"]
        b.driver("readdir", m.path(rel), "stat")
        out["readdir_stat"] = b.driver("readdir", m.path(rel), "stat")["seconds"]
    return out


def s_untar(b, t):
    with Mount(t) as m:
        out = {"untar": b.timed(["tar", "-xf", b.manifest["tar"]["path"], "-C", m.path()], "tar -x")}
        out["rm_untarred"] = b.timed(["rm", "-rf", m.path("bench-untar")], "rm -rf")
    return out


def s_rm(b, t):
    rel = b.manifest["rm"]["path"]
    with Mount(t) as m:
        if t.is_plain:  # remove a fresh copy, keep the tree
            run(["cp", "-a", m.path(rel), m.path(rel + ".bench-rm")], b.timeout, what="cp -a")
            rel += ".bench-rm"
        return {"rm_lower": b.timed(["rm", "-rf", m.path(rel)], "rm -rf")}


def s_depth(b, t):
    d = b.manifest["depth"]
    out = {}
    with_cold = b.root and b.sizes["BENCH_DEPTH_COLD"]
    for n in d["depths"]:
        for cold in (False, True) if with_cold else (False,):
            tag = f"depth{n}_cold" if cold else f"depth{n}"
            if cold:
                b.drop_caches()
            elif with_cold:
                # An earlier cold row dropped the caches: the fresh-mount row is "host caches
                # warm", so the same lookups are made once, untimed, on a mount of their own.
                with Mount(t, depth=n) as m:
                    b.driver("lstat", m.path(), d["exist"], "exist")
                    b.driver("lstat", m.path(), d["missing"], "missing")
            with Mount(t, depth=n) as m:
                r = b.driver("lstat", m.path(), d["exist"], "exist")
                out[f"{tag}_exist"] = m.seconds + r["seconds"]
                out[f"{tag}_missing"] = b.driver("lstat", m.path(), d["missing"], "missing")["seconds"]
    return out


# name, function, rows, also pinned, targets (None: all but the metacopy ones)
SESSIONS = [
    ("walk", s_walk, ["walk_cold", "walk_warm", "rss_hwm", "walk_fresh", "mount"], True, None),
    ("rss", s_rss, ["rss_node"], False, None),
    ("pwalk", s_pwalk, ["walk_p1", "walk_p2"], False, None),
    ("seq", s_seq, ["seq_cold", "seq_warm"], False, None),
    ("rand", s_rand, ["rand"], False, None),
    ("copyup", s_copyup, ["copyup", "copyup_sparse", "copyup_alloc"], False, None),
    ("chown", s_chown, ["chown"], True, TARGET_KEYS),
    ("chmod", s_chmod, ["chmod"], True, TARGET_KEYS),
    ("readdir", s_readdir, ["readdir", "readdir_stat"], True, None),
    ("untar", s_untar, ["untar", "rm_untarred"], True, None),
    ("rm", s_rm, ["rm_lower"], True, None),
    ("create", s_create, ["create"], True, None),
    ("depth", s_depth, ["depth*"], True, None),
]


def session_of(key):
    """The session that fills the row key (KEY or KEY@pin)."""
    key = key.split("@")[0]
    return next(s for s in SESSIONS if key in s[2] or (key.startswith("depth") and "depth*" in s[2]))


def runs_on(session, t):
    """Whether the session runs on the target t."""
    allowed = session[4] or [k for k in TARGET_KEYS if k not in METACOPY_KEYS]
    return t.key in allowed
