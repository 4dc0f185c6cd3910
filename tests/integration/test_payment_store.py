"""The engine's payment store (`engine_workers.store`) over each database it may use.

What the payer flow relies on: a request kept under (key, kind) is the one every retry sends,
whatever a later attempt built; its status is set in the same transaction; a new payment reads
back as written, and an X-CorrelationID seen before gives the payment it started.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from engine_workers.store import PaymentStore, metadata

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PaymentStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'payments.db'}"
    else:
        url = request.getfixturevalue(request.param).endpoint("url")
        eng = create_engine(url)
        metadata.drop_all(eng)
        eng.dispose()
    opened = PaymentStore(url)
    try:
        yield opened
    finally:
        opened.close()


async def test_the_first_kept_request_is_the_one_every_retry_gets(store: PaymentStore) -> None:
    payment, created = await store.create(
        "tx-1", tenant="bank-a", correlation_id="order-1", direction="PAYER", request={"n": 1}
    )
    assert created
    assert (payment.status, payment.request, payment.correlation_id) == (
        "RECEIVED",
        {"n": 1},
        "order-1",
    )
    first = await store.keep_request(
        "t-1", "post-transfers", {"expiration": "A"}, status=("tx-1", "TRANSFER_SENT")
    )
    again = await store.keep_request(
        "t-1", "post-transfers", {"expiration": "B"}, status=("tx-1", "TRANSFER_SENT")
    )
    assert first == {"expiration": "A"}
    assert again == {"expiration": "A"}  # the retry resends what was kept, not what it built
    assert await store.kept("t-1", "post-transfers") == {"expiration": "A"}
    assert await store.kept("t-1", "post-quotes") is None
    other = await store.keep_request("t-1", "post-quotes", {"q": 1})
    assert other == {"q": 1}  # another kind under the same key is another request
    read = await store.get("tx-1")
    assert read is not None
    assert read.status == "TRANSFER_SENT"
    assert read.request == {"n": 1}
    same, created_again = await store.create(
        "tx-2", tenant="bank-a", correlation_id="order-1", direction="PAYER", request={"n": 2}
    )
    assert not created_again
    assert same.transaction_id == "tx-1"
