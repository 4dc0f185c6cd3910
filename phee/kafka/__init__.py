"""The Kafka adapter: the only package importing aiokafka (import-linter contract "kafka-client").

Every reader of the engines' export topics goes through here, so all of them agree on what
decides correctness:
* `read_committed` always: the exporter writes in Kafka transactions, and a reader that saw an
  aborted batch would import records that never happened;
* offsets are committed only when the caller says so, after its own write (never auto-commit),
  and a commit refused after a rebalance is an outcome ("not committed"), not a crash;
* aiokafka's errors come out as our `KafkaError`, whose `retryable` says whether trying again
  may help (a broker away, a leader moving) or not (a record too large, a bad configuration).

`read_from_start` is the one loop that reads topics from their first record, with three
stopping rules: `Until` a condition holds, `Idle` (nothing new for a while), `ToEnd` (the
committed end the topics had when reading began).

`errors.py` maps aiokafka's errors, `clients.py` holds the consumer, the producer and the
metadata probe, `reading.py` the reading loop; import the names from `phee.kafka`.
"""

from __future__ import annotations

from aiokafka import TopicPartition

from phee.kafka.clients import (
    Batch,
    Broker,
    Consumer,
    Message,
    Producer,
    Record,
    brokers,
    consuming,
)
from phee.kafka.errors import KafkaError, mapped
from phee.kafka.reading import Idle, Progress, ToEnd, Until, read_from_start

__all__ = [
    "Batch",
    "Broker",
    "Consumer",
    "Idle",
    "KafkaError",
    "Message",
    "Producer",
    "Progress",
    "Record",
    "ToEnd",
    "TopicPartition",
    "Until",
    "brokers",
    "consuming",
    "mapped",
    "read_from_start",
]
