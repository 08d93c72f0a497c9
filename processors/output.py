"""Writes from inside a faust agent that belong to the input's transaction.

With ``processing_guarantee="exactly_once"`` faust runs one transactional producer per input
partition and commits the input offsets in that producer's transaction. Everything an input causes
-- the changelog write of the view, the status record, forwarded callbacks, analytics facts, a dead
letter -- must go through *that* producer, appended before the input is acknowledged, so that all of
it commits or aborts with the offset. faust's own table writes are buffered outside the transaction
(they can land after the commit and be lost to a crash), so the workers never use them: every
write goes through :meth:`Output.send`, awaited before the event is acknowledged.

With at-least-once, the same calls go to the plain producer, which faust flushes before it commits
offsets.
"""

from __future__ import annotations

from typing import Any

from schemas.errors import PersonaStreamError


class OutputError(PersonaStreamError):
    """Kafka refused a write: the worker must stop, and exactly-once recovery takes over."""


class Output:
    def __init__(self, app: Any, exactly_once: bool) -> None:
        self.app = app
        self.exactly_once = exactly_once

    def transactional_id(self, source_topic: str, source_partition: int) -> str:
        group = self.app.assignor.group_for_topic(source_topic)
        return f"{self.app.conf.id}-{group}-{source_partition}"

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        source: Any,
        partition: int | None = None,
    ) -> Any:
        """Append one record to the transaction of the input partition ``source`` (a faust TP).

        Returns the send's future (its record's metadata, once Kafka has it).
        """
        transactional_id = self.transactional_id(source.topic, source.partition) if self.exactly_once else None
        try:
            return await self.app.producer.send(
                topic, key, value, partition, None, None, transactional_id=transactional_id
            )
        except Exception as exc:
            raise OutputError(f"could not write to {topic}: {exc!r}") from exc
