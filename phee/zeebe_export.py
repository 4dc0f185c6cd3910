"""How an engine exports its records to Kafka: topic naming and the exporter's configuration.

Shared by the operator's broker ConfigMap and the local site's engines, so a pod and a local
engine export the same way. The exporter is the community `io.zeebe:zeebe-kafka-exporter`
(docs/decisions/0002-kafka-exporter.md).
"""

from __future__ import annotations

from typing import Any

KAFKA_EXPORTER_CLASS = "io.zeebe.exporters.kafka.KafkaExporter"
ALL_RECORD_TYPES = "command,event,rejection"


def topic_for(engine: str) -> str:
    """The Kafka topic that carries one engine's records."""
    return f"zeebe-{engine}"


def kafka_exporter(
    jar: str,
    bootstrap: str,
    *,
    client_id: str,
    topic: str,
    record_types: str = ALL_RECORD_TYPES,
    max_batch_size: int = 100,
    flush_interval_ms: int = 200,
) -> dict[str, Any]:
    """Exporter block for the community zeebe-kafka-exporter (3.1.1); the operator's broker
    configuration uses it too, so a local engine and a pod export the same way.

    `producer.config` is a Java properties string merged over the exporter's own producer
    defaults; `batch.size` must be there because the exporter's default is a java.lang.Long,
    which kafka-clients rejects for an int setting (ConfigException, nothing is ever sent).
    """
    return {
        "className": KAFKA_EXPORTER_CLASS,
        "jarPath": str(jar),
        "args": {
            "maxBatchSize": max_batch_size,
            "flushIntervalMs": flush_interval_ms,
            "producer": {
                "servers": bootstrap,
                "clientId": client_id,
                "requestTimeoutMs": 5000,
                "closeTimeoutMs": 5000,
                "maxBlockingTimeoutMs": 5000,
                # A crashed producer's open transaction holds back read_committed consumers
                # until it times out: 10 s rather than the 60 s default.
                "config": "batch.size=131072\nlinger.ms=5\ntransaction.timeout.ms=10000\n",
            },
            "records": {"defaults": {"type": record_types, "topic": topic}},
        },
    }
