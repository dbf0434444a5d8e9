"""The service (or any WSGI target) under gunicorn.conf.py, on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from harness.processes import ROOT, free_port, wait_until


class LiveServer:
    """The real service under gunicorn (sync workers), on a free loopback port."""

    # env: the service's configuration, on top of this process' environment. workers=None
    # keeps gunicorn.conf.py's default (2 * cores + 1). target: the WSGI app, so the
    # benchmark can serve its ceiling app under the very same config.
    def __init__(
        self, env: dict[str, str], workers: int | None, log_path: Path, target: str = "wsgi:app"
    ):
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.log_path = log_path
        self.target = target
        self.process: subprocess.Popen | None = None
        self.log = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        """Start gunicorn and wait until GET / answers 200 (its log says why if it never does)."""
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        env.pop("WEB_CONCURRENCY", None)
        if self.workers is not None:
            env["WEB_CONCURRENCY"] = str(self.workers)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"),
                *("--bind", f"127.0.0.1:{self.port}", self.target),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._answers, timeout=30)
            # Every worker forked, so worker_pids() is stable from here on (the first
            # answer can come while the master is still forking the last ones).
            if self.workers is not None and not self.env.get("REDIS_URL", "").startswith("memory"):
                wait_until(lambda: len(self.worker_pids()) >= self.workers, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.logs()[-3000:]}") from None
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{self.logs()[-3000:]}")
        try:
            return requests.get(f"{self.url}/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """The pids of the workers the gunicorn master runs now."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the master and its live workers have used so far."""
        ticks = 0
        for pid in (self.process.pid, *self.worker_pids()):
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue  # a worker that just exited
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
        return ticks / os.sysconf("SC_CLK_TCK")

    def logs(self) -> str:
        """Everything gunicorn and the app wrote so far (stdout and stderr)."""
        if self.log and not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after 15 s."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.log:
            self.log.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
