"""The server under test: set up its store with the ``fieldsync`` CLI, run gunicorn, watch its memory.

gunicorn is started with ``fieldsync serve``'s command line (``server.serving.gunicorn_argv``: worker
class, keep-alive, control socket; the threads the benchmark asks for) but without the access log, so
the figures measure Fieldsync rather than log writing. Peak memory is read from ``/proc/<pid>/status``
of every worker: ``VmHWM`` after resetting it through ``/proc/<pid>/clear_refs`` when the kernel
allows, and a ``VmRSS`` sampler in any case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from server.config import default_config
from server.serving import gunicorn_argv, worker_environment

REPO = Path(__file__).resolve().parent.parent
BENCH_ADMIN = "bench_admin"
BENCH_PASSWORD = "bench-password-not-secret"


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(database_url: str, work_dir: Path) -> dict[str, str]:
    """Return the environment the CLI and gunicorn run with (temp storage, no request log)."""
    env = dict(os.environ)
    env.update(
        {
            "FIELDSYNC_DATABASE_URL": database_url,
            "FIELDSYNC_STORAGE_DIR": str(work_dir / "storage"),
            "FIELDSYNC_VAR_DIR": str(work_dir / "var"),
            "FIELDSYNC_EXPORT_DIR": str(work_dir / "exports"),
            "FIELDSYNC_LOG_REQUESTS": "0",
            "FIELDSYNC_SECRET_KEY": "bench-secret-key-not-for-production",
            "FLASK_APP": "server.wsgi:app",
        }
    )
    return env


def fieldsync_cli(env: Mapping[str, str], *args: str) -> str:
    """Run ``fieldsync <args>`` (the console script of this venv) and return its stdout."""
    command = [sys.executable, "-c", "from server.cli import main; main()", *args]
    done = subprocess.run(command, env=dict(env), cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fieldsync {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the bench set up through the CLI: a project, an admin and a device token."""

    project_id: int
    admin_username: str
    admin_password: str
    device_token: str


def create_accounts(env: Mapping[str, str]) -> Accounts:
    """Migrate the fresh database and create the bench project, admin user and device (CLI)."""
    fieldsync_cli(env, "init-db")
    project_id = int(fieldsync_cli(env, "projects", "create", "Bench cooperative programme").strip().splitlines()[-1])
    fieldsync_cli(env, "users", "create", BENCH_ADMIN, "--role", "admin", "--password", BENCH_PASSWORD)
    out = fieldsync_cli(env, "devices", "create", "--project", str(project_id), "--name", "bench-phone")
    token = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("token:"))
    return Accounts(project_id, BENCH_ADMIN, BENCH_PASSWORD, token)


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the ppid is the 2nd field after the closing parenthesis.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            pids.append(int(entry.name))
    return pids


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_tree(root: int) -> list[int]:
    """Return ``root`` and every process descended from it (e.g. gunicorn, its workers, their children)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(_children(pid))
    return found


@dataclass
class MemoryWatch:
    """Peak memory of the workers during a block: sampled VmRSS and (when resettable) VmHWM, in MiB."""

    pids: list[int]
    baseline_mib: float = 0.0
    peak_rss_mib: float = 0.0
    peak_hwm_mib: float | None = None
    # A worker with the processes it forked (an export's helpers, exports.parts): its VmRSS plus their private
    # pages (those they share with the worker are in its RSS already); 0 while none was seen.
    peak_with_children_mib: float = 0.0
    children_seen: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        # Processes a worker had before the block (a form converter's) are not the block's: left out.
        before = {pid: set(_forked_by(pid)) for pid in self.pids}
        seen: set[int] = set()
        helpers_kib: dict[int, int] = {}  # worker -> its helpers' PSS at the last reading
        while not self._stop.is_set():
            reread = self.samples % 5 == 0  # smaps_rollup walks the page tables: every 50 ms, not 10
            for pid in self.pids:
                rss = _status_kib(pid, "VmRSS")
                if rss is None:
                    continue
                self.peak_rss_mib = max(self.peak_rss_mib, rss / 1024)
                if reread:
                    helpers = [child for child in _forked_by(pid) if child not in before[pid]]
                    seen.update(helpers)
                    helpers_kib[pid] = sum(_private_kib(child) for child in helpers)
                if helpers_kib.get(pid):
                    self.peak_with_children_mib = max(self.peak_with_children_mib, (rss + helpers_kib[pid]) / 1024)
            self.children_seen = len(seen)
            self.samples += 1
            self._stop.wait(0.01)


def _forked_by(pid: int) -> list[int]:
    """The children of ``pid``, from its threads' ``children`` lists (proc(5)); a pass over /proc without them."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        lists = [task / "children" for task in tasks.iterdir()]
    except OSError:
        return []
    if lists and not lists[0].exists():  # a kernel without CONFIG_PROC_CHILDREN
        return _children(pid)
    found: list[int] = []
    for children in lists:
        try:
            found += [int(child) for child in children.read_text().split()]
        except OSError:
            continue
    return found


def _private_kib(pid: int) -> int:
    """The pages only ``pid`` maps (``Private_Clean`` + ``Private_Dirty``): what a forked helper adds to its parent."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except OSError:
        return 0
    return total


@contextmanager
def watch_memory(pids: list[int]) -> Iterator[MemoryWatch]:
    """Record the workers' peak RSS while the block runs (sampling every 10 ms, plus VmHWM)."""
    watch = MemoryWatch(pids)
    rss = [_status_kib(pid, "VmRSS") or 0 for pid in pids]
    watch.baseline_mib = max(rss, default=0) / 1024
    resettable = True
    for pid in pids:
        try:
            # "5" resets the peak RSS (VmHWM) of the process to its current RSS (proc(5)).
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            resettable = False
    sampler = threading.Thread(target=watch._sample, daemon=True)
    sampler.start()
    try:
        yield watch
    finally:
        watch._stop.set()
        sampler.join()
        if resettable:
            hwm = [_status_kib(pid, "VmHWM") or 0 for pid in pids]
            watch.peak_hwm_mib = max(hwm, default=0) / 1024


class Server:
    """A running gunicorn serving ``server.wsgi:app`` on a loopback port."""

    def __init__(
        self, env: Mapping[str, str], work_dir: Path, workers: int, threads: int = 4, *, preload: bool = True
    ) -> None:
        self.env = dict(env)
        self.preload = preload
        self.work_dir = work_dir
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir / "gunicorn.log"

    def start(self, timeout: float = 60.0) -> None:
        """Start gunicorn and wait until ``/healthz`` answers 200."""
        config = default_config(self.work_dir / "var")
        # The command line of ``fieldsync serve`` (worker class, keep-alive, control socket, its hooks and
        # preloading), without the access log and with a longer worker timeout for the heaviest benchmark
        # requests. ``preload=False`` drops the hooks file: the memory bench's reference layout.
        args = gunicorn_argv(
            config,
            host="127.0.0.1",
            port=self.port,
            workers=self.workers,
            threads=self.threads,
            access_log=False,
            extra=("--timeout", "300", "--graceful-timeout", "5"),
        )
        if not self.preload:
            at = args.index("python:server.gunicorn_conf")
            del args[at - 1 : at + 1]
        self.env = worker_environment(config, self.env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log_tail()}")
            try:
                healthy = requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
                # Every worker imports the app at boot; wait until all of them exist.
                if healthy and len(self.worker_pids()) >= self.workers:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not become healthy within {timeout:.0f} s: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """Return the pids of the gunicorn workers."""
        return _children(self.process.pid) if self.process else []

    def log_tail(self, lines: int = 30) -> str:
        """Return the end of gunicorn's log (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop gunicorn gracefully (SIGTERM to the master), then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_server(env: Mapping[str, str], work_dir: Path, workers: int, threads: int = 4) -> Iterator[Server]:
    """Run gunicorn for the block and stop it afterwards."""
    server = Server(env, work_dir, workers, threads)
    server.start()
    try:
        yield server
    finally:
        server.stop()
