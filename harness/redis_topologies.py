"""Redis that fails over: a primary with replicas watched by sentinels, and a Redis Cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from harness.processes import free_port, wait_until
from harness.redis_server import RedisServer

SERVICE = "mymaster"


class ProcessGroup:
    """Several processes started together: a failed start stops the ones already up."""

    def start(self):
        """Start every process."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process."""
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()


class Sentinel:
    """One redis-sentinel process watching SERVICE."""

    def __init__(self, directory: Path, primary_port: int, down_after_ms: int, failover_ms: int):
        self.directory = directory
        self.port = free_port()
        self.conf = directory / "sentinel.conf"
        directory.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its own configuration file, so each gets a fresh one.
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {failover_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 2\n"
        )
        self.process = subprocess.Popen(
            ["redis-sentinel", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        """A client of this sentinel."""
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=1)

    def primary_port(self) -> int | None:
        """The port of the primary this sentinel names now (None if unreachable)."""
        try:
            address = self.client().sentinel_get_master_addr_by_name(SERVICE)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def stop(self) -> None:
        """SIGKILL."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class SentinelGroup(ProcessGroup):
    """A primary, `replicas` replicas and three sentinels (quorum 2), all on loopback.

    down_after_ms and failover_ms are the sentinels' settings, kept short for tests.
    """

    def __init__(
        self, directory: Path, replicas: int = 1, down_after_ms: int = 1000, failover_ms: int = 3000
    ):
        if not shutil.which("redis-sentinel"):
            raise RuntimeError("redis-sentinel is not installed (apt-get install redis-sentinel)")
        self.directory = directory
        self.replica_count = replicas
        self.down_after_ms = down_after_ms
        self.failover_ms = failover_ms
        self.primary: RedisServer | None = None
        self.replicas: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []

    @property
    def url(self) -> str:
        """The REDIS_URL an app uses: every sentinel and the service name."""
        nodes = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def start(self) -> SentinelGroup:
        """Start everything; return once every sentinel knows every replica and sentinel."""
        self.primary = RedisServer(self.directory / "primary").start()
        for index in range(self.replica_count):
            replica = RedisServer(
                self.directory / f"replica{index}",
                options=("--replicaof", "127.0.0.1", str(self.primary.port)),
            )
            self.replicas.append(replica.start())
        for index in range(3):
            self.sentinels.append(
                Sentinel(
                    self.directory / f"sentinel{index}",
                    self.primary.port,
                    self.down_after_ms,
                    self.failover_ms,
                )
            )
        wait_until(self._settled, timeout=30, interval=0.2)
        return self

    def _settled(self) -> bool:
        try:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(SERVICE)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < self.replica_count:
                    return False
            links = [r.client().info("replication")["master_link_status"] for r in self.replicas]
        except (redis.RedisError, KeyError):
            return False
        return all(link == "up" for link in links)

    def primary_port(self) -> int | None:
        """The primary's port as most sentinels name it."""
        ports = [sentinel.primary_port() for sentinel in self.sentinels]
        return max(set(ports), key=ports.count)

    def cut_replication(self) -> None:
        """The replicas stop receiving writes (and cannot reconnect) until restore."""
        for replica in self.replicas:
            client = replica.client()
            # A password the primary does not have: every reconnect fails its AUTH.
            client.config_set("masterauth", "cut-off")
            client.client_kill_filter(_type="master")

    def restore_replication(self) -> None:
        """The replicas may reconnect to whichever primary the sentinels name."""
        for replica in self.replicas:
            replica.client().config_set("masterauth", "")

    def stop(self) -> None:
        """Stop every process."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in [self.primary, *self.replicas]:
            if server:
                server.stop()


class RedisClusterNodes(ProcessGroup):
    """A Redis Cluster of `primaries` primaries (no replicas) made by redis-cli."""

    def __init__(self, directory: Path, primaries: int = 3):
        self.nodes = [
            RedisServer(
                directory / f"node{index}",
                options=(
                    *("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
                    # The bus port defaults to port + 10000, which may be taken or too high.
                    *("--cluster-port", str(free_port())),
                    *("--cluster-config-file", str(directory / f"node{index}" / "nodes.conf")),
                ),
            )
            for index in range(primaries)
        ]

    @property
    def url(self) -> str:
        """The REDIS_URL an app uses: every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterNodes:
        """Start the nodes, assign the slots and wait until every node says the cluster is ok."""
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(self._ok, timeout=30, interval=0.2)
        return self

    def _ok(self) -> bool:
        try:
            return all(n.client().cluster("info")["cluster_state"] == "ok" for n in self.nodes)
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
