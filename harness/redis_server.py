"""A private redis-server: on a loopback TCP port, a unix socket, or TLS only."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from harness.certificates import self_signed
from harness.processes import free_port, wait_until

TRANSPORTS = ("tcp", "unix", "tls")


class RedisServer:
    """A redis-server of our own in `directory`; stop() then start() keeps its data."""

    # transport: "tcp" (127.0.0.1, a free port), "unix" (a socket in `directory`, no TCP
    # port) or "tls" (TLS only, self-signed). appendonly: fsync every write, so a SIGKILL
    # loses nothing that was acknowledged. options: more redis-server arguments (a
    # replica's --replicaof, a cluster node's --cluster-enabled). launcher: a command the
    # server runs under (bench/commands.py --callgrind: valgrind).
    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        transport: str = "tcp",
        options: tuple[str, ...] = (),
        launcher: tuple[str, ...] = (),
    ):
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.directory = directory
        self.appendonly = appendonly
        self.transport = transport
        self.options = options
        self.launcher = launcher
        self.port = free_port()
        self.socket_path = directory / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The REDIS_URL an app uses to reach this server."""
        if self.transport == "unix":
            return f"unix://{self.socket_path}"
        scheme = "rediss" if self.transport == "tls" else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (same port, directory and data as before a stop) and wait for PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *(*self.launcher, "redis-server"),
                *(*self._listen_options(), *self._storage_options(), *self.options),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=60 if self.launcher else 10)
        return self

    def _listen_options(self) -> list[str]:
        if self.transport == "tcp":
            return ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.transport == "unix":
            return ["--port", "0", "--unixsocket", str(self.socket_path)]
        cert, key = self_signed(self.directory)
        return [
            *("--port", "0", "--bind", "127.0.0.1", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-auth-clients", "no"),
        ]

    def _storage_options(self) -> list[str]:
        return [
            *("--dir", str(self.directory), "--save", ""),
            *("--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"),
            *("--logfile", str(self.directory / "redis.log")),
        ]

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server exited:\n{log}")
        try:
            return self.client(socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client for this server (decoded responses)."""
        if self.transport == "unix":
            where = {"unix_socket_path": str(self.socket_path)}
        elif self.transport == "tls":
            where = {"port": self.port, "ssl": True, "ssl_cert_reqs": "none"}
        else:
            where = {"port": self.port}
        return redis.Redis(**where, decode_responses=True, **kwargs)

    def stop(self) -> None:
        """SIGKILL: whatever it had not written to disk is gone."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its socket but answers nothing."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: answer again."""
        self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
