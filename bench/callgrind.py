"""Instructions a process runs between two points, counted by valgrind's callgrind.

A count of instructions does not move with the machine's load the way time does, so a
change's effect can be read from one run of each tree. The process runs under
`valgrind --tool=callgrind --instr-atstart=no` (`command()`): start-up runs
uninstrumented, and only what runs between start() and stop() is counted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def command(out_file: Path, *argv: str) -> list[str]:
    """`argv` under callgrind, instrumentation off until a Callgrind starts it."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("--callgrind needs valgrind: apt-get install -y valgrind")
    return [
        *("valgrind", "--tool=callgrind", "--instr-atstart=no", "--quiet"),
        f"--callgrind-out-file={out_file}",
        *argv,
    ]


class Callgrind:
    """Counts the instructions process `pid` (started by command(out_file, ...)) runs."""

    def __init__(self, pid: int, out_file: Path):
        self.pid = pid
        self.out_dir = out_file.parent

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True, capture_output=True)

    def start(self) -> None:
        self._control("-z")
        self._control("-i", "on")

    def stop(self) -> int:
        """Instructions since start()."""
        self._control("-i", "off")
        before = set(self.out_dir.glob("*"))
        self._control("-d")
        dumps = set(self.out_dir.glob("*")) - before
        for line in max(dumps, key=lambda p: p.stat().st_mtime).read_text().splitlines():
            if line.startswith("totals:"):  # "summary:" is 0 in a dump
                return int(line.split()[1])
        raise RuntimeError("callgrind dump without totals")
