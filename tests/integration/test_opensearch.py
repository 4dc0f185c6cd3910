"""OpenSearch: the node assembled from Maven Central jars, and the back office's search adapter
(`backoffice.search`, on opensearch-py) against it: index, search, replays, refusals, and the
error it raises once the node is gone.

Reads that check the node itself go over plain HTTP (httpx), so they do not depend on the
adapter under test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from backoffice.search import Search, SearchError
from harness.components import Running, get
from harness.components.opensearch import MODULES
from harness.components.versions import OPENSEARCH
from tests.conftest import start_component

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def search(opensearch: Running) -> Iterator[Search]:
    adapter = Search(opensearch.endpoint("http"), f"t-{uuid.uuid4().hex[:8]}")
    try:
        yield adapter
    finally:
        adapter.close()


def transfer(key: int, status: str = "COMMITTED", amount: str = "10.50") -> dict[str, Any]:
    """A transfers row as the importer hands it to the adapter."""
    return {
        "engine": "engine-a",
        "process_instance_key": key,
        "transaction_id": f"tx-{key}",
        "status": status,
        "amount": Decimal(amount),
        "currency": "USD",
        "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }


def test_the_node_is_opensearch_of_the_pinned_version_with_every_module(
    opensearch: Running,
) -> None:
    base = opensearch.endpoint("http")
    root = httpx.get(base, timeout=10).json()
    assert root["version"]["distribution"] == "opensearch"
    assert root["version"]["number"] == OPENSEARCH == opensearch.version
    nodes = httpx.get(f"{base}/_nodes/plugins", timeout=10).json()["nodes"]
    (node,) = nodes.values()
    assert {m["name"] for m in node["modules"]} == {module for _, module, _, _ in MODULES}
    assert node["plugins"] == []  # no security plugin: plain HTTP, no authentication
    assert node["transport_address"].startswith("127.0.0.1:")
    assert httpx.get(f"{base}/_cluster/health", timeout=10).json()["status"] in {"green", "yellow"}


def test_painless_and_the_common_analysers_work(opensearch: Running) -> None:
    """lang-painless and analysis-common (which extends it) are loaded and usable."""
    base = opensearch.endpoint("http")
    analysed = httpx.post(
        f"{base}/_analyze",
        json={"tokenizer": "whitespace", "filter": ["lowercase", "asciifolding"], "text": "Ça Va"},
        timeout=10,
    ).json()
    assert [t["token"] for t in analysed["tokens"]] == ["ca", "va"]
    index = f"painless-{uuid.uuid4().hex[:8]}"
    created = httpx.put(f"{base}/{index}/_doc/1?refresh=true", json={"n": 20}, timeout=10)
    assert created.status_code == 201
    updated = httpx.post(
        f"{base}/{index}/_update_by_query?refresh=true",
        json={
            "script": {
                "lang": "painless",
                "source": "ctx._source.n += params.k",
                "params": {"k": 1},
            }
        },
        timeout=30,
    ).json()
    assert updated["updated"] == 1
    assert httpx.get(f"{base}/{index}/_doc/1", timeout=10).json()["_source"] == {"n": 21}


def test_the_adapter_indexes_transfers_per_tenant_and_finds_them(
    search: Search, opensearch: Running
) -> None:
    search.ensure_indexes(["t1", "t2"])
    search.ensure_indexes(["t1"])  # a second importer's start changes nothing
    docs = [("t1", transfer(1)), ("t1", transfer(2, "ABORTED", "99.99")), ("t2", transfer(3))]
    assert search.index(docs) == 3
    for tenant in ("t1", "t2"):
        search.refresh(tenant)
    committed = search.find("t1", {"term": {"status": "COMMITTED"}})
    assert [d["transaction_id"] for d in committed] == ["tx-1"]
    assert committed[0]["amount"] == "10.50"
    assert committed[0]["started_at"] == "2026-01-02T03:04:05+00:00"
    by_amount = search.find("t1", sort=[{"amount": "desc"}])
    assert [d["transaction_id"] for d in by_amount] == ["tx-2", "tx-1"]
    assert [d["tenant"] for d in search.find("t2")] == ["t2"]
    mapping = httpx.get(f"{opensearch.endpoint('http')}/{search.index_name('t1')}", timeout=10)
    settings = mapping.json()[search.index_name("t1")]
    assert settings["mappings"]["properties"]["amount"]["type"] == "scaled_float"
    assert settings["settings"]["index"]["number_of_replicas"] == "0"


def test_a_replayed_batch_changes_nothing(search: Search) -> None:
    search.ensure_indexes(["t1"])
    batch = [("t1", transfer(k)) for k in range(1, 6)]
    assert search.index(batch) == 5
    assert search.index(batch) == 5  # same ids, same documents
    search.index([("t1", transfer(5, "ABORTED"))])  # a later state of one transfer
    search.refresh("t1")
    found = search.find("t1", size=50)
    assert len(found) == 5
    assert {d["transaction_id"]: d["status"] for d in found}["tx-5"] == "ABORTED"


def test_a_document_the_mapping_refuses_is_an_error_that_a_retry_cannot_fix(
    search: Search,
) -> None:
    search.ensure_indexes(["t1"])
    bad = transfer(7)
    bad["unknown_field"] = "x"  # the mapping is strict
    with pytest.raises(SearchError) as info:
        search.index([("t1", transfer(6)), ("t1", bad)])
    assert info.value.retryable is False
    assert "1 documents refused" in str(info.value)
    assert "strict_dynamic_mapping_exception" in str(info.value)


def test_searching_an_index_that_does_not_exist_is_not_retryable(search: Search) -> None:
    with pytest.raises(SearchError) as info:
        search.find("never-created")
    assert info.value.retryable is False
    assert "404" in str(info.value)


def test_a_node_that_is_down_gives_retryable_errors(tmp_path: Path) -> None:
    """A node of its own, stopped under the adapter: every call says a retry may help."""
    run = start_component("opensearch", tmp_path)
    search = Search(run.endpoint("http"), "down")
    try:
        search.ensure_indexes(["t1"])
        assert search.index([("t1", transfer(1))]) == 1
        get("opensearch").stop(run)
        calls: dict[str, Callable[[], object]] = {
            "ensure_indexes": lambda: search.ensure_indexes(["t2"]),
            "index": lambda: search.index([("t1", transfer(2))]),
            "find": lambda: search.find("t1"),
            "refresh": lambda: search.refresh("t1"),
        }
        for what, call in calls.items():
            with pytest.raises(SearchError) as info:
                call()
            assert info.value.retryable is True, what
            assert "OpenSearch unreachable" in str(info.value), what
    finally:
        search.close()
        get("opensearch").stop(run)  # no-op once stopped
