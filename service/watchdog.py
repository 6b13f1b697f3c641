"""`python -m service.watchdog PID`: when process PID dies, even by SIGKILL, kill what it started.

vLLM's engine core and workers are children of the server; a server killed with SIGKILL cannot
stop them, and they would run on, orphaned, holding memory (and a GPU). The server starts this
small process at start-up. It records the server's descendants every half second (pid and start
time, so that a reused pid is never hit) and, once the server is gone (PR_SET_PDEATHSIG tells it
at once; a changed parent pid is the fallback), sends SIGKILL to every one still alive.

It reads the descendants from the kernel's child lists (/proc/PID/task/TID/children), a few small
files, rather than every process's status: it runs beside the engine all the time, and on a small
machine every wake-up takes a core from the model. A kernel without those lists gets the full scan.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import psutil

POLL_SECONDS = 0.5


CHILD_LISTS = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, start time) of every process."""
    return {p.pid: (p.info["ppid"], p.info["create_time"])
            for p in psutil.process_iter(["ppid", "create_time"]) if p.info["create_time"] is not None}


def _started(pid: int) -> float | None:
    """When pid started (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return float(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def descendants(root: int) -> dict[int, float]:
    """pid -> start time of every live descendant of root."""
    if CHILD_LISTS:
        children, started = _children, _started
    else:
        table = _processes()
        by_parent: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            by_parent.setdefault(ppid, []).append(pid)
        children, started = (lambda pid: by_parent.get(pid, [])), (lambda pid: table[pid][1])
    found, todo = {}, [root]
    while todo:
        for child in children(todo.pop()):
            if (start := started(child)) is not None:
                found[child] = start
                todo.append(child)
    return found


def _start_time(pid: int) -> float | None:
    """pid's start time as descendants() records it, or None if it is gone."""
    if CHILD_LISTS:
        return _started(pid)
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def watch(server: int) -> None:
    me = os.getpid()
    known: dict[int, float] = {}
    gone = False

    def server_died(*_):
        nonlocal gone
        gone = True

    signal.signal(signal.SIGTERM, server_died)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    while not gone and os.getppid() == server:
        known.update({pid: start for pid, start in descendants(server).items() if pid != me})
        time.sleep(POLL_SECONDS)
    for pid, start in known.items():
        if _start_time(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start() -> subprocess.Popen:
    """Start the watchdog for this process."""
    return subprocess.Popen([sys.executable, "-m", "service.watchdog", str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
