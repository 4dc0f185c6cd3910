"""The back office's OpenSearch adapter: one index per tenant, one document per transfer.

Documents are the transfers rows (id `<engine>-<processInstanceKey>`), written whole with the
bulk API, so indexing the same state twice (a replayed batch) changes nothing. Errors come out
as `SearchError`, saying whether a retry may help: an unreachable node, a timeout, 429 (bulk
queue full) and 5xx answers are retryable; any other refusal (a mapping conflict, a bad request)
is not. This is the only module that imports the client (`opensearchpy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as OsConnectionError
from opensearchpy.exceptions import TransportError

#: HTTP statuses after which the same request may succeed later
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_KEYWORDS = (
    "engine", "bpmn_process_id", "direction", "transaction_id", "quote_id", "transfer_id",
    "correlation_id", "status", "outcome", "error_code", "payer_id_type", "payer_id",
    "payer_dfsp", "payee_id_type", "payee_id", "payee_dfsp", "currency", "tenant",
    "process_instance_key", "end_state", "open_incidents",
)  # fmt: skip
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        **{name: {"type": "keyword"} for name in _KEYWORDS},
        "amount": {"type": "scaled_float", "scaling_factor": 10000},
        "reason": {"type": "text"},
        "recorded_reason": {"type": "text"},
        "error_message": {"type": "text"},
        "started_at": {"type": "date"},
        "completed_at": {"type": "date"},
        "updated_at": {"type": "date"},
    },
}


class SearchError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _mapped(err: TransportError, what: str) -> SearchError:
    """A client error as ours. ConnectionError (and its ConnectionTimeout) is a TransportError
    whose status is the string "N/A": nothing was answered, so a retry may help."""
    if isinstance(err, OsConnectionError):
        return SearchError(f"OpenSearch unreachable ({what}): {err}", retryable=True)
    status = err.status_code
    retryable = isinstance(status, int) and status in RETRYABLE_STATUSES
    return SearchError(f"OpenSearch refused {what} ({status}): {err}", retryable=retryable)


def doc_id(row: dict[str, Any]) -> str:
    return f"{row['engine']}-{row['process_instance_key']}"


def document(tenant: str, row: dict[str, Any]) -> dict[str, Any]:
    """A transfers row as a JSON document (dates ISO-8601, amounts as decimal strings)."""
    doc: dict[str, Any] = {"tenant": tenant}
    for name, value in row.items():
        if isinstance(value, datetime):
            doc[name] = value.isoformat()
        elif isinstance(value, Decimal):
            doc[name] = str(value)
        else:
            doc[name] = value
    return doc


class Search:
    """Transfers in OpenSearch, index `<prefix>-<tenant>`."""

    def __init__(self, url: str, prefix: str) -> None:
        # Retries are the importer's (it replays the whole batch), never the client's.
        self.client = OpenSearch(hosts=[url], timeout=30, max_retries=0, retry_on_timeout=False)
        self.prefix = prefix

    def index_name(self, tenant: str) -> str:
        return f"{self.prefix}-{tenant}"

    def ensure_indexes(self, tenants: Iterable[str]) -> None:
        for tenant in tenants:
            name = self.index_name(tenant)
            try:
                if not self.client.indices.exists(index=name):
                    self.client.indices.create(
                        index=name,
                        body={"settings": {"number_of_replicas": 0}, "mappings": MAPPING},
                        params={"ignore": 400},  # created meanwhile by another importer
                    )
            except TransportError as err:
                raise _mapped(err, f"creating index {name}") from err

    def index(self, docs: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Write (tenant, transfers row) pairs; every failure is an error, none is dropped."""
        if not docs:
            return 0
        actions = [
            {
                "_op_type": "index",
                "_index": self.index_name(tenant),
                "_id": doc_id(row),
                "_source": document(tenant, row),
            }
            for tenant, row in docs
        ]
        try:
            ok, errors = helpers.bulk(
                self.client, actions, raise_on_error=False, chunk_size=2000, max_retries=0
            )
        except TransportError as err:
            raise _mapped(err, "the bulk") from err
        if isinstance(errors, list) and errors:
            statuses = {item.get("index", {}).get("status") for item in errors}
            retryable = bool(statuses & RETRYABLE_STATUSES)
            raise SearchError(
                f"{len(errors)} documents refused, first: {errors[0]}", retryable=retryable
            )
        return int(ok)

    def find(
        self,
        tenant: str,
        query: dict[str, Any] | None = None,
        *,
        size: int = 100,
        sort: Sequence[str | dict[str, Any]] = (),
    ) -> list[dict[str, Any]]:
        """The tenant's documents that match `query` (all by default), at most `size`."""
        body: dict[str, Any] = {"query": query or {"match_all": {}}, "size": size}
        if sort:
            body["sort"] = list(sort)
        try:
            found = self.client.search(index=self.index_name(tenant), body=body)
        except TransportError as err:
            raise _mapped(err, "a search") from err
        return [hit["_source"] for hit in found["hits"]["hits"]]

    def refresh(self, tenant: str) -> None:
        try:
            self.client.indices.refresh(index=self.index_name(tenant))
        except TransportError as err:
            raise _mapped(err, "a refresh") from err

    def close(self) -> None:
        self.client.close()
