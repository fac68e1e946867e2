"""Server-sent events for the two watch-like routes (generation progress, training jobs).

The first event is awaited before the response starts, so a request that fails at once (unknown
concept, bad token, unknown job) gets its proper status and ErrorDetail body; a failure after
that arrives as an `error` event carrying the same body and the status it would have had.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from serving.http.errors import error_body, http_status

KEEP_ALIVE_S = 15.0
Encode = Callable[[Any], tuple[str, dict[str, Any]]]
"""event → (event name, JSON-able data)."""


def frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(
    events: AsyncIterator[Any], encode: Encode, *, on_close: Callable[[], Awaitable[None]] | None = None
) -> StreamingResponse:
    """`events` as an SSE response; `on_close` runs once the stream ends, fails or is abandoned."""
    try:
        first = await anext(events)
    except BaseException:
        if on_close is not None:
            await on_close()
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
            if pending is not None:
                pending.cancel()
            if on_close is not None:
                await on_close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
