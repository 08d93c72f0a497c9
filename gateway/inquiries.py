"""``GET /v1/inquiries/{id}``: one inquiry's view, with its provenance visible.

The gateway holds no views. It asks a worker (``worker_url``; any worker: faust routes the request
to the one that owns the inquiry's partition) with a short-lived internal token, then decides what
the caller may see:

=========  ====================================================================================
scope      may read
=========  ====================================================================================
firehose   any inquiry
subscribe  an inquiry whose *trusted* reference-id is the token's subject, or the token's ``inq``
=========  ====================================================================================

=====  ======================  ==============================================================
HTTP   code                    when
=====  ======================  ==============================================================
200    --                      the view (:class:`~schemas.views.ViewDocument`): ``trusted`` +
                               ``audit`` (verified webhooks), ``client`` (unverified callbacks),
                               ``flags`` (derived) and ``provenance`` (which is which)
400    invalid-inquiry-id      not an inquiry id
401    token-*                 no bearer token, or one that does not open this endpoint
404    not-found               no such inquiry -- or not the caller's (no existence oracle)
503    views-unavailable       no worker answered
=====  ======================  ==============================================================
"""

from __future__ import annotations

import time

import aiohttp
import orjson
from aiohttp import web

from core.tokens import STATUS_READERS, Claims, TokenAuthority, TokenError, bearer_token
from schemas.callbacks import is_inquiry_id
from schemas.codec import decode, to_jsonable
from schemas.errors import Code, SchemaError
from schemas.views import InquiryView, Provenance

PROVENANCE = to_jsonable(Provenance())


def may_read(claims: Claims, view: InquiryView) -> bool:
    if claims.scope == "firehose":
        return True
    if claims.inquiry_id is not None:
        return claims.inquiry_id == view.inquiry_id
    return view.trusted.reference_id is not None and view.trusted.reference_id == claims.subject


class InquiryReader:
    def __init__(self, worker_url: str, tokens: TokenAuthority, timeout: float = 3.0) -> None:
        self.worker_url = worker_url.rstrip("/")
        self.tokens = tokens
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._internal: tuple[float, str] = (0.0, "")
        self._session: aiohttp.ClientSession | None = None

    def _internal_token(self) -> str:
        expires, token = self._internal
        if time.time() > expires - 10:
            token = self.tokens.mint("persona-stream-gateway", "firehose", 60)
            self._internal = (time.time() + 60, token)
        return token

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        try:
            claims = self.tokens.verify(bearer_token(header), STATUS_READERS)
        except TokenError as exc:
            return _answer(401, exc.code, str(exc))
        inquiry_id = request.match_info["inquiry_id"]
        if not is_inquiry_id(inquiry_id):
            return _answer(400, Code.INVALID_INQUIRY_ID, "not an inquiry id")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(
                f"{self.worker_url}/v1/views/{inquiry_id}",
                headers={"Authorization": f"Bearer {self._internal_token()}"},
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _answer(503, Code.VIEWS_UNAVAILABLE, f"no worker answered: {exc!r}")
        if status == 404:
            return _answer(404, Code.NOT_FOUND, "no such inquiry")
        if status != 200:
            return _answer(503, Code.VIEWS_UNAVAILABLE, f"the worker answered {status}")
        try:
            view = decode(InquiryView, body)
        except SchemaError:
            return _answer(503, Code.VIEWS_UNAVAILABLE, "the worker sent an unreadable view")
        if not may_read(claims, view):
            return _answer(404, Code.NOT_FOUND, "no such inquiry")
        document = orjson.loads(body)
        document["provenance"] = PROVENANCE
        return web.json_response(document, dumps=lambda value: orjson.dumps(value).decode())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _answer(status: int, code: Code, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)
