"""Elasticsearch: index and search with the official Python client of the server's version."""

from __future__ import annotations

import uuid

import elasticsearch
from elasticsearch import AsyncElasticsearch, Elasticsearch

from harness.components import Running


def test_client_and_server_versions_match(elasticsearch: Running) -> None:
    client = Elasticsearch(elasticsearch.endpoint("http"))
    server = client.info()["version"]["number"]
    assert server == elasticsearch.version
    client_major_minor = ".".join(str(p) for p in _client_version()[:2])
    assert server.startswith(client_major_minor + ".")


def _client_version() -> tuple[int, ...]:
    return tuple(elasticsearch.VERSION)


def test_index_and_search(elasticsearch: Running) -> None:
    client = Elasticsearch(elasticsearch.endpoint("http"))
    index = f"transfers-{uuid.uuid4().hex[:8]}"
    client.indices.create(
        index=index,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings={
            "properties": {
                "transactionId": {"type": "keyword"},
                "amount": {"type": "scaled_float", "scaling_factor": 100},
                "status": {"type": "keyword"},
            }
        },
    )
    docs: list[dict[str, str | float]] = [
        {"transactionId": "tx-1", "amount": 10.5, "status": "COMMITTED"},
        {"transactionId": "tx-2", "amount": 99.99, "status": "ABORTED"},
        {"transactionId": "tx-3", "amount": 250, "status": "COMMITTED"},
    ]
    for doc in docs:
        client.index(index=index, id=str(doc["transactionId"]), document=doc)
    client.indices.refresh(index=index)
    found = client.search(
        index=index,
        query={"bool": {"filter": [{"term": {"status": "COMMITTED"}}]}},
        sort=["amount"],  # ascending; the 7.17 client puts it in the request body
    )
    assert found["hits"]["total"]["value"] == 2
    assert [h["_source"]["transactionId"] for h in found["hits"]["hits"]] == ["tx-1", "tx-3"]
    assert client.cluster.health(index=index)["status"] == "green"


async def test_async_client_round_trip(elasticsearch: Running) -> None:
    client = AsyncElasticsearch(elasticsearch.endpoint("http"))
    try:
        index = f"steps-{uuid.uuid4().hex[:8]}"
        await client.index(
            index=index, id="1", document={"step": "block-funds"}, refresh="wait_for"
        )
        got = await client.get(index=index, id="1")
        assert got["_source"] == {"step": "block-funds"}
        count = await client.count(index=index)
        assert count["count"] == 1
    finally:
        await client.close()
