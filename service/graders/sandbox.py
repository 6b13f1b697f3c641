"""The `python` grader's sandbox: user code runs in a separate process that sees almost nothing.

Each call starts one process under bubblewrap (`bwrap`, Debian's `bubblewrap` package):
- its own network namespace with no interface up: no socket reaches anything;
- its own PID, IPC and UTS namespaces, and a `/proc` of its own: no other process is visible;
- a filesystem of read-only `/usr` (with the `/bin`, `/lib` links), the Python installation
  and numpy, and an empty 16 MiB `/tmp`; nothing else exists: no data directory, database, key
  files, home directory, `/etc` or the server's code and packages;
- an empty environment (no secrets), run as the unprivileged user `nobody` (uid 65534) with no
  capabilities, when the server runs as root (otherwise in a user namespace of its own);
- rlimits: address space (`python_grader_memory_mib`), CPU seconds, processes (a fork bomb stops at
  16), open files and file size; a wall-clock limit on the whole call, past which the process group
  is killed; each `grade` call also has its own alarm.

What it does not protect against: a kernel exploit, or a flaw in bubblewrap; CPU time and memory
the grader takes within its limits (it competes with the server for them); denial of service
through many jobs each within limits. An operator who runs no untrusted graders can turn python
graders off (`--python-graders false`, or FTSERVE_PYTHON_GRADERS=false).

The grader is OpenAI's: `def grade(sample: dict, item: dict) -> float`, with the standard library
and numpy importable.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import resource
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

SITE = "/opt/grader-site"  # where numpy appears inside the sandbox
NOBODY = 65534

_RUNNER = r"""
import json, math, numbers, os, signal, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # what the grader prints goes to stderr, never into the results
sys.path[:0] = [%(site)r]
data = json.loads(sys.stdin.read())
class _Timeout(BaseException):
    pass
def _alarm(*_):
    raise _Timeout()
signal.signal(signal.SIGALRM, _alarm)
def put(line):
    out.write(json.dumps(line) + "\n")
    out.flush()
namespace = {"__name__": "grader"}
try:
    exec(compile(data["source"], "grader.py", "exec"), namespace)
    grade = namespace["grade"]
except BaseException as e:
    put({"fatal": f"{type(e).__name__}: {str(e)[:500]}"})
    sys.exit(0)
for case in data["cases"]:
    signal.setitimer(signal.ITIMER_REAL, data["case_timeout"])
    try:
        score = grade(case["sample"], case["item"])
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(float(score)):
            put({"error": f"grade returned {type(score).__name__} {str(score)[:80]!r}, not a finite number"})
        else:
            put({"score": float(score)})
    except _Timeout:
        put({"error": f"grade ran longer than {data['case_timeout']} s"})
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        put({"error": f"{type(e).__name__}: {str(e)[:500]}"})
"""


class SandboxUnavailable(Exception):
    """Python graders cannot run here (no bubblewrap, or turned off)."""


@dataclass
class Outcome:
    """One `grade` call: its score, or why it has none."""

    score: float | None
    error: str | None = None


@dataclass(frozen=True)
class Limits:
    wall_s: float = 30.0  # the whole call
    case_s: float = 5.0  # one grade() call
    memory_mib: int = 1024
    processes: int = 16
    max_source_bytes: int = 256 * 1024


class PythonSandbox:
    def __init__(self, limits: Limits = Limits(), enabled: bool = True):
        self.limits, self.enabled = limits, enabled
        self.bwrap = shutil.which("bwrap")
        self._probe: str | None = None  # why the sandbox cannot start here ("" once it has)

    def check(self) -> None:
        """SandboxUnavailable if python graders cannot run on this server, saying why."""
        if not self.enabled:
            raise SandboxUnavailable("python graders are turned off on this server (--python-graders false)")
        if self.bwrap is None:
            raise SandboxUnavailable("python graders need bubblewrap on the server (Debian: apt-get install "
                                     "bubblewrap), and it is not installed")
        if self._probe is None:  # once: can the sandbox start here (a container may forbid namespaces)?
            import subprocess

            cmd = self._command()
            done = subprocess.run(cmd[:-1] + ["pass"], capture_output=True, text=True, timeout=30,
                                  preexec_fn=self._limit, env={})
            self._probe = "" if done.returncode == 0 else (done.stderr.strip()[-300:] or f"exit {done.returncode}")
        if self._probe:
            raise SandboxUnavailable(f"the python grader sandbox cannot start on this server: {self._probe}")

    async def run(self, source: str, cases: list[dict]) -> list[Outcome]:
        """`grade(case["sample"], case["item"])` for each case, in one sandboxed process."""
        self.check()
        data = json.dumps({"source": source, "cases": cases, "case_timeout": self.limits.case_s}).encode()
        proc = await asyncio.create_subprocess_exec(
            *self._command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=self._limit, env={},
        )
        ended = None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(data), self.limits.wall_s)
        except asyncio.TimeoutError:
            ended = f"the grader ran past the {self.limits.wall_s:g} s limit and was stopped"
            out = b""
        finally:
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
        outcomes = []
        for raw in out.splitlines()[: len(cases)]:
            line = json.loads(raw)
            if "fatal" in line:
                return [Outcome(None, f"the grader could not be loaded: {line['fatal']}") for _ in cases]
            outcomes.append(Outcome(line.get("score"), line.get("error")))
        if len(outcomes) < len(cases):
            if ended is None:
                code = proc.returncode
                ended = (f"the grader process was killed by {signal.Signals(-code).name}" if code and code < 0
                         else f"the grader process exited with code {code}") + " (a resource limit, or a crash)"
            outcomes += [Outcome(None, ended) for _ in range(len(cases) - len(outcomes))]
        return outcomes

    # ------------------------------------------------------------------ how
    def _limit(self) -> None:  # in the child, before bwrap starts: inherited by everything inside
        mem = self.limits.memory_mib * 1024 * 1024
        cpu = max(1, int(self.limits.wall_s))
        for what, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu),
                            (resource.RLIMIT_FSIZE, 16 * 1024 * 1024), (resource.RLIMIT_NOFILE, 64),
                            (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, self.limits.processes)):
            resource.setrlimit(what, (value, value))

    def _command(self) -> list[str]:
        python = os.path.realpath(sys.executable)
        cmd = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", "/usr/bin",
               "--setenv", "OPENBLAS_NUM_THREADS", "1", "--setenv", "OMP_NUM_THREADS", "1",
               "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            path = Path(top)
            if path.is_symlink():
                cmd += ["--symlink", os.readlink(path), top]
            elif path.is_dir():
                cmd += ["--ro-bind", top, top]
        prefix = os.path.realpath(sys.base_prefix)
        if not prefix.startswith("/usr/") and prefix != "/usr":
            cmd += ["--ro-bind", prefix, prefix]
        if not python.startswith(("/usr/", prefix + "/")):
            cmd += ["--ro-bind", python, python]
        cmd += ["--perms", "0755", "--dir", SITE]  # made by bwrap, else root-only
        for name in ("numpy", "numpy.libs"):
            spec = importlib.util.find_spec("numpy")
            where = Path(spec.origin).parent.parent / name if spec and spec.origin else None
            if where is not None and where.is_dir():
                cmd += ["--ro-bind", str(where), f"{SITE}/{name}"]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(16 * 1024 * 1024), "--tmpfs", "/tmp",
                "--chdir", "/tmp"]
        if os.geteuid() == 0:  # drop to nobody, no capabilities; else a user namespace makes it unprivileged
            cmd += ["--", "/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
        else:
            cmd += ["--unshare-user", "--"]
        return cmd + [python, "-I", "-c", _RUNNER % {"site": SITE}]
