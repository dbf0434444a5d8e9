"""The webhook deliverer (`flask --app wsgi deliver`) as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.processes import ROOT


class Deliverer:
    """One deliverer process with the service's configuration `env`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.log = None

    def start(self) -> Deliverer:
        """Start it (it creates the consumer group and waits for events)."""
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "deliver"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: a deliverer that dies mid-delivery, with no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (it finishes the attempt under way), SIGKILL after 15 s."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log:
            self.log.close()

    def logs(self) -> str:
        """What it wrote so far."""
        if self.log and not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")
