"""The broker's routine "retry that" to a transactional producer: counted, and said once.

Since Kafka 3.6 a broker verifies that each transactional write's partition has been added to its
transaction (KIP-890), by asking the transaction coordinator. When that check cannot be answered
at once -- the coordinator is still writing the markers of the producer's previous transaction
(``CONCURRENT_TRANSACTIONS``), or it is loading -- the broker tells a client that speaks a produce
version older than 11, as aiokafka does, ``NOT_ENOUGH_REPLICAS``: the one retriable error such a
client knows. aiokafka retries the batch (nothing is lost, nothing doubled) and warns once per
partition, every time. A worker commits every ``commit_interval_seconds`` (0.1 s), so on a fresh
or busy broker these warnings stream by, and they read as if the cluster lacked replicas.

:class:`TransactionalRetries` is a :class:`logging.Filter` on aiokafka's sender logger, installed
only in exactly-once workers (every producer there is transactional): it drops those warnings,
counts them (``persona_stream_worker_produce_retries_total``) and logs one INFO line the first
time. Nothing that matters is hidden: a write that really cannot reach ``min.insync.replicas``
fails once aiokafka's retries time out, and the worker stops loudly
(``processors.app._stop_now``). Every other warning passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

SENDER_LOGGER = "aiokafka.producer.sender"
RETRY_MESSAGE = "Got error produce response on topic-partition"
ERROR_NAME = "NotEnoughReplicasError"

log = logging.getLogger(__name__)


class TransactionalRetries(logging.Filter):
    def __init__(self, count: Callable[[], None]) -> None:
        super().__init__()
        self.count = count
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not str(record.msg).startswith(RETRY_MESSAGE):
            return True
        if ERROR_NAME not in record.getMessage():
            return True
        self.seen += 1
        self.count()
        if self.seen == 1:
            log.info(
                "Kafka asked for a transactional write to be retried (NOT_ENOUGH_REPLICAS: the broker's answer "
                "while the transaction coordinator completes the previous transaction); retried, nothing lost. "
                "Further retries are counted in persona_stream_worker_produce_retries_total"
            )
        return False


def install(count: Callable[[], None]) -> TransactionalRetries:
    """Add the filter to aiokafka's sender logger (once per process: a worker's entry point)."""
    sender = logging.getLogger(SENDER_LOGGER)
    for existing in [f for f in sender.filters if isinstance(f, TransactionalRetries)]:
        sender.removeFilter(existing)
    retries = TransactionalRetries(count)
    sender.addFilter(retries)
    return retries
