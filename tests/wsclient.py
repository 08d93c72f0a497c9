"""A small websocket client speaking the gateway's protocol, for tests.

Every frame it sends and receives is checked against the published JSON Schemas (tests/contract.py);
a test that sends a malformed frame on purpose says so with ``checked=False``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tests.contract import check_client_frame, check_server_frame


class Client:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.acks: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str | None, **kwargs: Any) -> Client:
        client = cls(await connect(url, **kwargs))
        if token is not None:
            await client.send({"type": "auth", "token": token})
        return client

    async def send(self, document: dict[str, Any], *, checked: bool = True) -> None:
        if checked:
            check_client_frame(document)
        await self.connection.send(orjson.dumps(document).decode())

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        check_server_frame(frame)
        self.frames.append(frame)
        if frame["type"] == "ack":
            self.acks[frame["session"]] = max(frame["seq"], self.acks.get(frame["session"], -1))
        elif frame["type"] == "error":
            self.errors.append(frame)
        return frame

    async def ready(self) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == "ready", frame
        return frame

    async def callback(self, session: str, seq: int, callback: dict[str, Any], **extra: Any) -> None:
        await self.send(
            {"type": "callback", "session": session, "seq": seq, "ts": 1_700_000_000_000, "callback": callback, **extra}
        )

    async def until_acked(self, session: str, seq: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while self.acks.get(session, -1) < seq:
                await self.recv(timeout)

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        """Wait for the server to close; return (code, reason)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except Exception:  # noqa: BLE001 - ConnectionClosed ends the wait
            pass
        await self.connection.wait_closed()
        received = self.connection.protocol.close_rcvd
        return (received.code, received.reason) if received else (None, None)

    async def close(self) -> None:
        await self.connection.close()
