"""The broker's routine retries of transactional writes: dropped from the log, counted, said once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from processors import retries
from processors.retries import SENDER_LOGGER, TransactionalRetries


@dataclass
class Case:
    level: int
    msg: str
    args: tuple[object, ...]
    dropped: bool


NOT_ENOUGH = "<class 'aiokafka.errors.NotEnoughReplicasError'>"
CASES = [
    Case(logging.WARNING, "Got error produce response on topic-partition %s, retrying. Error: %s",
         ("TopicPartition(topic='t', partition=0)", NOT_ENOUGH), dropped=True),
    Case(logging.WARNING, "Got error produce response on topic-partition %s, retrying. Error: %s",
         ("TopicPartition(topic='t', partition=0)", "<class 'aiokafka.errors.NotLeaderForPartitionError'>"),
         dropped=False),
    Case(logging.WARNING, "Got error produce response: %s", (NOT_ENOUGH,), dropped=False),
    Case(logging.ERROR, "Got error produce response on topic-partition %s, retrying. Error: %s",
         ("TopicPartition(topic='t', partition=0)", NOT_ENOUGH), dropped=False),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_only_the_not_enough_replicas_retry_warnings_are_dropped_and_counted(case: Case) -> None:
    counted: list[None] = []
    record = logging.LogRecord(SENDER_LOGGER, case.level, __file__, 1, case.msg, case.args, None)
    assert TransactionalRetries(lambda: counted.append(None)).filter(record) is not case.dropped
    assert len(counted) == (1 if case.dropped else 0)


def test_the_first_retry_is_said_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    counted: list[None] = []
    sender = logging.getLogger(SENDER_LOGGER)
    installed = retries.install(lambda: counted.append(None))
    retries.install(lambda: counted.append(None))  # installing again replaces, never stacks
    installed_now = [f for f in sender.filters if isinstance(f, TransactionalRetries)]
    try:
        assert len(installed_now) == 1
        assert installed_now[0] is not installed
        for partition in range(5):
            sender.warning(CASES[0].msg, f"TopicPartition(topic='t', partition={partition})", NOT_ENOUGH)
    finally:
        sender.removeFilter(installed_now[0])
    assert len(counted) == 5
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "NOT_ENOUGH_REPLICAS" in caplog.records[0].getMessage()
    assert all(r.name != SENDER_LOGGER for r in caplog.records)
