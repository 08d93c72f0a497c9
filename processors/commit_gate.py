"""Keeps a transaction commit from falling between an input's writes and its acknowledgement.

Under exactly-once an input's writes are appended to its partition's open transaction, and its
offset joins that transaction when the input is acknowledged. faust commits on a timer, whatever
the agents are doing: a commit that lands after an input's first write but before its
acknowledgement makes the write durable while the offset waits for the *next* transaction. Should
that one abort (a crash, a rebalance), the input is processed again and its writes appear twice --
a trusted status version published twice.

The gate makes inputs and commits mutually exclusive, like Kafka Streams committing only between
records: any number of inputs may be inside at once; a commit waits until none is, and no input
enters while a commit runs. An input leaves the gate at the end of the agent's loop body, and faust
acknowledges it when the loop asks for the next one -- without yielding to the event loop in
between, so no commit can be scheduled there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CommitGate:
    def __init__(self) -> None:
        self._inside = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @property
    def inputs_inside(self) -> int:
        return self._inside

    @property
    def committing(self) -> bool:
        return not self._open.is_set()

    @asynccontextmanager
    async def input(self) -> AsyncIterator[None]:
        """Process one input (or one batch): waits while a commit runs."""
        while not self._open.is_set():
            await self._open.wait()
        self._inside += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    @asynccontextmanager
    async def commit(self) -> AsyncIterator[None]:
        """Commit: closes the gate to new inputs, then waits for the ones inside to leave."""
        while not self._open.is_set():
            await self._open.wait()
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()
