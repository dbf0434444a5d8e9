"""A fresh checkout of the project, and `make run` (scripts/run.sh) started in it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness.processes import ROOT, free_port, wait_until


def fresh_checkout(destination: Path) -> Path:
    """What a clone of the working tree would hold (tracked and new, unignored files).

    Copied rather than cloned so that uncommitted work is what gets tested; the shared
    .venv is linked in, as `make` would otherwise build one.
    """
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to((ROOT / ".venv").resolve())
    return destination


def clean_env(**variables: str) -> dict[str, str]:
    """A newcomer's shell: PATH and HOME, nothing of the test run's configuration."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(variables)
    return env


class MakeRun:
    """scripts/run.sh (what `make run` runs after the venv) on a free port, output captured."""

    def __init__(self, checkout: Path, **variables: str):
        self.checkout = checkout
        self.port = variables.setdefault("PORT", str(free_port()))  # may be bad on purpose
        self.env = clean_env(**variables)
        self.log_path = checkout / f"make-run-{self.port}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The base URL the run serves."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        """Everything it printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> MakeRun:
        """Start it; returns at once (see wait_for)."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "scripts/run.sh"],
                cwd=self.checkout,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Wait until `text` is printed; fails with the output if it exits first."""

        def printed():
            if text in self.output:
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"run.sh exited ({self.process.returncode}):\n{self.output}")
            return False

        try:
            wait_until(printed, timeout=timeout, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"{text!r} not printed in {timeout} s:\n{self.output}") from None
        return self.output

    def finish(self, timeout: float = 30) -> int:
        """Wait for it to exit by itself; its exit code."""
        return self.process.wait(timeout=timeout)

    def stop(self) -> int | None:
        """Ctrl-C: SIGINT to the script, which stops what it started; then its exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise

    def redis_pid(self) -> int | None:
        """The pid of the private redis-server this run said it started, if any."""
        found = re.search(r"started by this run \(pid (\d+)", self.output)
        return int(found.group(1)) if found else None

    def kill_leftovers(self) -> None:
        """After stop(): SIGKILL whatever it started that is still alive (a failed test)."""
        self.stop()
        pid = self.redis_pid()
        if pid and process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie of ours)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
