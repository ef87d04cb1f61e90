"""A local three-node Kafka cluster (`scripts/kafka-cluster.sh`) on ports of its own, for the
broker-loss fault test and the replication benchmark: start, stop, kill a node, find a leader."""

from __future__ import annotations

import os
import subprocess

from aiokafka.admin import AIOKafkaAdminClient

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

    def start(self) -> None:
        self.ctl("start")

    def stop(self) -> None:
        self.ctl("stop")

    def kill(self, node: int) -> None:
        """SIGKILL, as a crash would."""
        self.ctl("kill-node", str(node))

    def start_node(self, node: int) -> None:
        self.ctl("start-node", str(node))

    async def leaders(self, topic: str) -> dict[int, int]:
        """partition -> the node leading it (-1: none)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            return {p["partition"]: p["leader"] for t in await admin.describe_topics([topic]) for p in t["partitions"]}
        finally:
            await admin.close()

    async def in_sync(self, topic: str) -> bool:
        """Every partition of `topic` has all its replicas in sync."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            return all(len(p["isr"]) == len(p["replicas"]) for t in await admin.describe_topics([topic])
                       for p in t["partitions"])
        finally:
            await admin.close()
