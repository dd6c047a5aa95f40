"""What every part of the scripts/bench runner uses: running a command with a timeout,
the error a failed workload or mount raises, the run's log."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


class Failed(Exception):
    """A workload or a mount failed; the message says how."""


class Log:
    """Writes to stdout and to the run's log file."""

    def __init__(self, path):
        self.file = open(path, "w", buffering=1)

    def __call__(self, *parts, end="\n"):
        text = " ".join(str(p) for p in parts) + end
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            pass
        self.file.write(text)


def short(text, limit=160):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(cmd, timeout, what=None, **kw):
    """Runs cmd; raises Failed with the command's last stderr line when it fails."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise Failed(f"{what or os.path.basename(cmd[0])}: timed out after {timeout} s") from None
    except OSError as e:
        raise Failed(f"{what or cmd[0]}: {e.strerror}") from None
    if p.returncode != 0:
        err = [line for line in p.stderr.splitlines() if line.strip()]
        msg = err[-1] if err else f"exit status {p.returncode}"
        raise Failed(f"{what or os.path.basename(cmd[0])}: {short(msg)}")
    return p
