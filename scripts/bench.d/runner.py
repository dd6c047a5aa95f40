"""One run of scripts/bench: its state (the targets, the manifest of the datasets, the
results and failures), the helpers that the workloads use (the driver, timing, dropping
the caches, notes for the report) and the loop that runs every session on every target,
interleaved and repeated, unpinned and pinned."""

import json
import os
import time

import datasets
from common import Failed, run
from mounts import make_targets
from workloads import SESSIONS, runs_on

PIN = ["taskset", "-c", "0"]


class Bench:
    """One run: what main() set up, what the sessions found, what the report reads."""

    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.tmp = args.tmp
        self.timeout = args.timeout
        self.pin = []  # PIN while a pinned run goes on: for the workload and the daemon
        self.pinned = False
        self.root = os.geteuid() == 0
        self.manifest = None
        self.results = {}  # row key -> target key -> list of values
        self.failures = {}  # (session, target key) -> message
        self.notes = []
        self.targets = []
        self.sizes = {}

    # helpers used by the sessions

    def driver(self, *args):
        p = run(self.pin + [self.args.driver, *map(str, args)], self.timeout, what=f"driver {args[0]}")
        return json.loads(p.stdout)

    def timed(self, cmd, what):
        start = time.perf_counter()
        run(self.pin + cmd, self.timeout, what=what)
        return time.perf_counter() - start

    def drop_caches(self):
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")

    def lower(self, rel):
        """The path of rel in the topmost layer that has it."""
        for layer in reversed(self.manifest["layers"]):
            p = os.path.join(layer, rel)
            if os.path.lexists(p):
                return p
        raise Failed(f"{rel} is in no layer")

    def note(self, text):
        """A note for the report (printed with the table, not in the middle of a row of dots)."""
        if text not in self.notes:
            self.notes.append(text)

    def check_count(self, target, what, seen, expected):
        if seen != expected:
            self.note(f"{target.title}: {what} found {seen} entries, the layers hold {expected}")

    # setup

    def setup_targets(self):
        self.targets = make_targets(self, self.args.layerfs, self.args.targets, self.root)

    def generate(self):
        data = self.args.data or os.path.join(self.tmp, "data")
        self.manifest = datasets.load_or_generate(data, self.root, self.log)

    # running

    def modes(self, session):
        """Unpinned, and pinned too for the metadata workloads (unless --no-pinned)."""
        return [False, True] if session[3] and not self.args.no_pinned else [False]

    def run_all(self):
        sessions = [s for s in SESSIONS if s[0] in self.args.only]
        reps = self.args.reps
        for session in sessions:
            name, workload = session[0], session[1]
            for pinned in self.modes(session):
                self.pinned = pinned
                self.pin = PIN if pinned else []
                suffix = "@pin" if pinned else ""
                self.log(f"== {name}{' pinned to CPU 0' if pinned else ''} ", end="")
                start = time.perf_counter()
                failed = []
                for rep in range(reps):
                    for t in self.targets:  # interleaved: A B C A B C ...
                        fkey = (name + suffix, t.key)
                        if t.unavailable or fkey in self.failures or not runs_on(session, t):
                            continue
                        try:
                            out = workload(self, t)
                        except Exception as e:  # noqa: BLE001 - one failed cell, the run goes on
                            if not isinstance(e, Failed):
                                e = f"{type(e).__name__}: {e}"
                            self.failures[fkey] = f"failed: {e}"
                            failed.append(f"   {t.title}: failed: {e}")
                            self.log("x", end="")
                            t.unmount()
                            continue
                        for key, value in out.items():
                            if value is not None:
                                self.results.setdefault(key + suffix, {}).setdefault(t.key, []).append(value)
                        self.log(".", end="")
                self.log(f" {time.perf_counter() - start:.1f} s")
                for line in failed:
                    self.log(line)
        self.pinned = False
        self.pin = []
