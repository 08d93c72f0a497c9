"""The workers' faust App class: the state the runtime's corrections share, as typed attributes.

:class:`WorkerApp` is faust's ``App`` with two things of the project's own that the transport
driver (:mod:`processors.driver`) and the table class (:mod:`processors.tables`) reach through it:

* ``commit_gate`` -- inputs and commits are mutually exclusive (:mod:`processors.commit_gate`);
* ``aborted`` -- the partitions whose open transaction a rebalance aborted, whose tables must be
  recovered from the changelog;
* ``committed_writes`` -- what each partition's open transaction wrote to the local stores, so
  that it reaches RocksDB when, and only when, the transaction commits (:mod:`processors.store`).

Its broker URLs use the driver's scheme and its tables the project's table class; it refuses to
exist on a faust, mode or aiokafka version other than the pinned ones (:mod:`processors.versions`).
"""

from __future__ import annotations

from typing import Any

import faust

from processors import versions
from processors.commit_gate import CommitGate
from processors.driver import SCHEME
from processors.store import CommittedWrites
from processors.tables import AbortedPartitions, Table


class WorkerApp(faust.App):  # type: ignore[misc]
    def __init__(
        self,
        id: str,
        *,
        brokers: list[str],
        store_memory_bytes: int = 128 << 20,
        restore_checkpoint_records: int = 250_000,
        **options: Any,
    ) -> None:
        versions.check()
        self.store_memory_bytes = store_memory_bytes  # each local store's RocksDB budget (processors.store)
        self.restore_checkpoint_records = restore_checkpoint_records  # see processors.restore
        super().__init__(id, broker=[f"{SCHEME}://{host}" for host in brokers], Table=Table, **options)
        self.commit_gate = CommitGate()
        self.aborted = AbortedPartitions()
        self.committed_writes = CommittedWrites()


class Worker(faust.Worker):  # type: ignore[misc]
    """faust's worker, without the terminal spinner: a service's output is its log."""

    def __init__(self, app: WorkerApp, **options: Any) -> None:
        super().__init__(app, **options)
        self.spinner = None
