"""Server-sent events for the two watch-like routes (generation progress, training jobs).

The first event is awaited before the response starts, so a request that fails at once (unknown
concept, bad token, unknown job) gets its proper status and ErrorDetail body; a failure after
that arrives as an `error` event carrying the same body and the status it would have had.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from serving.http.errors import error_body, http_status

KEEP_ALIVE_S = 15.0
Encode = Callable[[Any], tuple[str, dict[str, Any]]]
"""event → (event name, JSON-able data)."""


def frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    events: AsyncIterator[Any], encode: Encode, *, on_close: Callable[[], None] | None = None
) -> StreamingResponse:
    """`events` as an SSE response. Once the stream ends, fails or the client goes away, `on_close`
    runs (e.g. closing the channel `events` reads from) and `events` is closed, so the work behind
    it stops with the response."""

    async def close(pending: asyncio.Future[Any] | None) -> None:
        if on_close is not None:
            on_close()  # first: closing a channel unblocks a read in progress
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()

    try:
        first = await anext(events)
    except BaseException:
        await close(None)
        raise

    async def body() -> AsyncIterator[str]:
        pending: asyncio.Future[Any] | None = None
        try:
            yield frame(*encode(first))
            while True:
                pending = pending or asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({pending}, timeout=KEEP_ALIVE_S)
                if not done:
                    yield ": keep-alive\n\n"  # a comment: idle connections stay open through proxies
                    continue
                pending, finished = None, done.pop()
                if isinstance(finished.exception(), StopAsyncIteration):
                    return
                yield frame(*encode(finished.result()))
        except Exception as e:  # noqa: BLE001 - the status is already sent: report the error in-band
            yield frame("error", {"status": http_status(e), **error_body(e)})
        finally:
            await close(pending)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
