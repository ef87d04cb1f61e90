"""A local three-node Kafka cluster (`scripts/kafka-cluster.sh`) on ports of its own, for the
broker-loss fault test and the replication benchmark: start, stop, kill a node, find a leader."""

from __future__ import annotations

import asyncio
import os
import subprocess

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from testing.harness import ROOT


class LocalCluster:
    """Nodes 1..3 on `port`..`port`+2 (controllers 100 above), state under `.infra/<name>`."""

    def __init__(self, port: int, name: str, nodes: int = 3) -> None:
        self.port, self.nodes = port, nodes
        self.env = {**os.environ, "KAFKA_BROKERS": str(nodes), "KAFKA_CLUSTER_PORT": str(port),
                    "KAFKA_CLUSTER_DIR": str(ROOT / ".infra" / name)}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.nodes))

    def ctl(self, *args: str) -> None:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-cluster.sh"), *args], capture_output=True,
                              text=True, timeout=240, env=self.env)
        if done.returncode:
            raise RuntimeError(f"kafka-cluster.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self, *, fresh: bool = False) -> None:
        """Start every node; `fresh`: a new cluster, nothing kept from an earlier start."""
        if fresh:
            self.ctl("reset")
        self.ctl("start")

    def stop(self) -> None:
        self.ctl("stop")

    def kill(self, node: int) -> None:
        """SIGKILL, as a crash would."""
        self.ctl("kill-node", str(node))

    def start_node(self, node: int) -> None:
        self.ctl("start-node", str(node))

    async def _topics(self, topics: list[str], timeout: float = 60.0) -> list[dict]:
        """Kafka's description of `topics`, asked again while a node the client picked is down."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5_000)
            try:
                await admin.start()
                return await admin.describe_topics(topics)
            except KafkaError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
            finally:
                await admin.close()

    async def leaders(self, topic: str) -> dict[int, int]:
        """partition -> the node leading it (-1: none)."""
        return {p["partition"]: p["leader"] for t in await self._topics([topic]) for p in t["partitions"]}

    async def in_sync(self, *topics: str) -> bool:
        """Every partition of `topics` has all its replicas in sync."""
        return all(len(p["isr"]) == len(p["replicas"]) for t in await self._topics(list(topics))
                   for p in t["partitions"])
