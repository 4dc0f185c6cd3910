"""Name -> component. Start order matters: Kafka Connect needs Kafka first."""

from __future__ import annotations

from collections.abc import Callable

from harness.components.base import Artifact, Component, ComponentError


def _kafka() -> Component:
    from harness.components.kafka import Kafka

    return Kafka()


def _kafka_connect() -> Component:
    from harness.components.connect import KafkaConnect

    return KafkaConnect()


def _opensearch() -> Component:
    from harness.components.opensearch import OpenSearch

    return OpenSearch()


def _postgresql() -> Component:
    from harness.components.postgres import PostgreSQL

    return PostgreSQL()


def _operaton() -> Component:
    from harness.components.operaton import Operaton

    return Operaton()


def _mariadb() -> Component:
    from harness.components.mariadb import MariaDB

    return MariaDB()


def _prometheus() -> Component:
    from harness.components.prometheus import Prometheus

    return Prometheus()


def _ttk() -> Component:
    from harness.components.ttk import TestingToolkit

    return TestingToolkit()


def _kube() -> Component:
    from harness.components.kube import Kube

    return Kube()


_FACTORIES: dict[str, Callable[[], Component]] = {
    "kafka": _kafka,
    "kafka-connect": _kafka_connect,
    "opensearch": _opensearch,
    "postgresql": _postgresql,
    "operaton": _operaton,
    "mariadb": _mariadb,
    "prometheus": _prometheus,
    "ttk": _ttk,
    "kube": _kube,
}


def _api_snippets() -> Artifact:
    from harness.components.artifacts import ApiSnippets

    return ApiSnippets()


def _servicemonitor_crd() -> Artifact:
    from harness.components.kubebuild import ServiceMonitorCrd

    return ServiceMonitorCrd()


_ARTIFACTS: dict[str, Callable[[], Artifact]] = {
    "api-snippets": _api_snippets,
    "servicemonitor-crd": _servicemonitor_crd,
}

#: every component, in start order
NAMES: tuple[str, ...] = tuple(_FACTORIES)
#: everything `fetch` knows: the components, then the files read at run time
FETCHABLE: tuple[str, ...] = NAMES + tuple(_ARTIFACTS)


def get(name: str) -> Component:
    """The component called `name`, or a clear error listing the known ones."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ComponentError(f"unknown component {name!r}; known: {', '.join(NAMES)}") from None


def get_fetchable(name: str) -> Artifact:
    """A component or a run-time artifact, for fetch and status."""
    if name in _ARTIFACTS:
        return _ARTIFACTS[name]()
    if name in _FACTORIES:
        return _FACTORIES[name]()
    raise ComponentError(f"unknown component {name!r}; known: {', '.join(FETCHABLE)}")


def ordered(names: list[str] | tuple[str, ...]) -> list[str]:
    """`names` validated, de-duplicated and sorted into start order."""
    for name in names:
        get(name)
    return [n for n in NAMES if n in set(names)]
