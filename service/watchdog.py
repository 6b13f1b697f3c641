"""`python -m service.watchdog PID`: when process PID dies, even by SIGKILL, kill what it started.

vLLM's engine core and workers are children of the server; a server killed with SIGKILL cannot
stop them, and they would run on, orphaned, holding memory (and a GPU). The server starts this
small process at start-up. It records the server's descendants every half second (pid and start
time, so that a reused pid is never hit) and, once the server is gone (PR_SET_PDEATHSIG tells it
at once; a changed parent pid is the fallback), sends SIGKILL to every one still alive.
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


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, start time) of every process."""
    return {p.pid: (p.info["ppid"], p.info["create_time"])
            for p in psutil.process_iter(["ppid", "create_time"]) if p.info["create_time"] is not None}


def descendants(root: int, table: dict[int, tuple[int, float]]) -> dict[int, float]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = table[child][1]
            todo.append(child)
    return found


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
        table = _processes()
        known.update({pid: start for pid, start in descendants(server, table).items() if pid != me})
        time.sleep(POLL_SECONDS)
    table = _processes()
    for pid, start in known.items():
        if pid in table and table[pid][1] == start:
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
