"""The systems under test and their mounts: the kernel's overlayfs (also metacopy=on),
fuse-overlayfs, layerfs (also metacopy=on), and the merged tree as a plain directory (no mount); finding the
FUSE daemon of a mount and reading its memory; unmounting, by force when it must."""

import os
import re
import shutil
import signal
import subprocess
import time

from common import Failed, run

TARGET_KEYS = ["kernel", "kernel-metacopy", "fuse-overlayfs", "layerfs", "layerfs-metacopy", "plain"]
# Targets that differ from another only by metacopy=on: they run chown -R and chmod -R only.
METACOPY_KEYS = ["kernel-metacopy", "layerfs-metacopy"]


def mountinfo():
    """(mount point, major:minor, fstype) of every mount, unescaped."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((point, fields[2], fields[sep + 1]))
    return out


def is_mounted(path):
    return any(p == path for p, _, _ in mountinfo())


def daemon_pid(mnt, names):
    """The pid of the FUSE daemon serving mnt: the process of that name whose command line
    holds the mount point (unique to this run)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]).decode(errors="replace") in names and mnt.encode() in args:
            return int(d)
    return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def proc_status(pid, field="VmRSS"):
    """A memory field of /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise Failed(f"no {field} in /proc/{pid}/status")


class Target:
    """One of the systems under test. "plain" is no mount at all: the merged tree
    materialised as a directory (the physical limit)."""

    def __init__(self, key, title, binary, daemon_names, ctx):
        self.key = key
        self.title = title
        self.binary = binary
        self.daemon_names = daemon_names
        self.ctx = ctx
        self.unavailable = None  # why this target cannot run, if it cannot
        self.mnt = os.path.join(ctx.tmp, "mnt", key)
        self.serial = 0
        self.pid = None

    @property
    def is_fuse(self):
        return bool(self.daemon_names)

    @property
    def is_kernel(self):
        return self.key.startswith("kernel")

    @property
    def is_plain(self):
        return self.key == "plain"

    def mount_cmd(self, upper, work, layers=None):
        """The mount command and the directory it runs in. The kernel gets the lower
        layers relative to their parent directory (a mount's options must fit in a page:
        500 layers do only with short names)."""
        layers = layers or self.ctx.manifest["layers"]  # bottom first
        cwd = None
        if self.is_kernel:
            cwd = os.path.dirname(layers[0])
            lowers = ":".join(os.path.basename(d) for d in reversed(layers))  # top first
        else:
            lowers = ":".join(reversed(layers))
        opts = f"lowerdir={lowers}" + (f",upperdir={upper},workdir={work}" if upper else "")
        if self.key in METACOPY_KEYS:
            opts += ",metacopy=on"
        if self.is_kernel:
            return ["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt], cwd
        return self.ctx.pin + [self.binary, "-o", opts, self.mnt], cwd

    def unmount(self):
        """Unmounts, waits for the daemon to end; forces it when a clean unmount fails."""
        if self.is_plain or not is_mounted(self.mnt):
            return
        cmd = ["umount", self.mnt] if self.is_kernel else ["fusermount3", "-u", self.mnt]
        done = False
        for _ in range(20):
            try:
                done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      timeout=30).returncode == 0
            except subprocess.TimeoutExpired:
                break
            if done:
                break
            time.sleep(0.25)
        if not done:
            self.force_unmount()
        self.wait_daemon()

    def force_unmount(self):
        for point, dev, fstype in mountinfo():
            if point == self.mnt and fstype.startswith("fuse"):
                minor = dev.split(":")[1]
                try:
                    with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
                        f.write("1")
                except OSError:
                    pass
        subprocess.run(["umount", "-l", self.mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)
        if self.pid and alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)

    def wait_daemon(self):
        if not self.pid:
            return
        deadline = time.monotonic() + 10
        while alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None


class Mount:
    """A fresh mount of a target with a new empty upper and workdir (none when readonly);
    unmounted and its upper removed on exit. depth=N mounts the lookup-depth stack of N
    layers instead of the image. For the plain target nothing is mounted: the path is the
    materialised merged tree, and the workloads that write undo their changes."""

    def __init__(self, target, readonly=False, depth=None):
        self.t = target
        self.readonly = readonly  # no upper (only for workloads that do not write)
        self.depth = depth
        self.seconds = None
        self.upper = None

    def __enter__(self):
        t = self.t
        m = t.ctx.manifest
        if t.is_plain:
            self.root = m["depth"]["plain"] if self.depth else m["plain"]
            self.seconds = 0.0
            return self
        t.unmount()
        self.root = t.mnt
        t.serial += 1
        base = os.path.join(t.ctx.tmp, "rw", f"{t.key}-{t.serial}")
        self.base = base
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper)
        os.makedirs(work)
        os.makedirs(t.mnt, exist_ok=True)
        layers = m["depth"]["layers"][str(self.depth)] if self.depth else None
        if self.readonly:
            cmd, cwd = t.mount_cmd(None, None, layers)
        else:
            cmd, cwd = t.mount_cmd(upper, work, layers)
            self.upper = upper
        start = time.perf_counter()
        try:
            run(cmd, 60, what="mount", cwd=cwd)
        except Failed:
            self._remove()
            raise
        self.seconds = time.perf_counter() - start
        if not is_mounted(t.mnt):
            self._remove()
            raise Failed("mount: the mount command succeeded but nothing is mounted")
        t.pid = daemon_pid(t.mnt, t.daemon_names) if t.is_fuse else None
        return self

    def __exit__(self, *exc):
        if self.t.is_plain:
            return False
        self.t.unmount()
        self._remove()
        return False

    def _remove(self):
        if is_mounted(self.t.mnt):
            return  # never remove a tree that something may still write into
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, rel=""):
        return os.path.join(self.root, rel) if rel else self.root


def make_targets(ctx, layerfs, wanted, root):
    """The targets named in wanted, in the order of TARGET_KEYS; one that cannot run says
    why in its unavailable."""
    fo = shutil.which("fuse-overlayfs")
    specs = [
        ("kernel", "kernel overlayfs", None, []),
        ("kernel-metacopy", "kernel overlayfs metacopy=on", None, []),
        ("fuse-overlayfs", "fuse-overlayfs", fo, ["fuse-overlayfs"]),
        ("layerfs", "layerfs", layerfs, ["layerfs"]),
        ("layerfs-metacopy", "layerfs metacopy=on", layerfs, ["layerfs"]),
        ("plain", "plain directory", None, []),
    ]
    targets = []
    for key, title, binary, names in specs:
        t = Target(key, title, binary, names, ctx)
        if key.startswith("kernel") and not root:
            t.unavailable = "skipped: the kernel's overlayfs needs root"
        elif key in ("fuse-overlayfs", "layerfs", "layerfs-metacopy") and not binary:
            t.unavailable = f"skipped: {key} is not installed"
        if key in wanted:
            targets.append(t)
    return targets
