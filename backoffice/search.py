"""The back office's Elasticsearch adapter: one index per tenant, one document per transfer.

Documents are the transfers rows (id `<engine>-<processInstanceKey>`), written whole with the
bulk API, so indexing the same state twice (a replayed batch) changes nothing. Errors come out
as `SearchError`, saying whether a retry may help.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from elasticsearch import Elasticsearch, helpers
from elasticsearch.exceptions import ConnectionError as EsConnectionError
from elasticsearch.exceptions import ConnectionTimeout, TransportError

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
    """Transfers in Elasticsearch, index `<prefix>-<tenant>`."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = Elasticsearch(url, timeout=30, max_retries=0)
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
                        settings={"number_of_replicas": 0},
                        mappings=MAPPING,
                        ignore=400,  # created meanwhile by another importer
                    )
            except (EsConnectionError, ConnectionTimeout) as err:
                raise SearchError(f"Elasticsearch unreachable: {err}", retryable=True) from err

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
        except (EsConnectionError, ConnectionTimeout) as err:
            raise SearchError(f"Elasticsearch unreachable: {err}", retryable=True) from err
        except TransportError as err:
            raise SearchError(f"Elasticsearch refused the bulk: {err}", retryable=False) from err
        if isinstance(errors, list) and errors:
            statuses = {item.get("index", {}).get("status") for item in errors}
            retryable = bool(statuses & {429, 503})
            raise SearchError(
                f"{len(errors)} documents refused, first: {errors[0]}", retryable=retryable
            )
        return int(ok)

    def refresh(self, tenant: str) -> None:
        self.client.indices.refresh(index=self.index_name(tenant))

    def close(self) -> None:
        self.client.close()
