"""POST /v1/generate and /v1/generate/stream: the Generator's two RPCs over JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from proto import generator_pb2
from serving.http.api import Context, Identity
from serving.http.schemas import GenerateBody, GenerateResult, StepOut
from serving.http.sse import event_stream
from shared.errors import InvalidArgument

PNG = "image/png"


def wants_png(request: Request) -> bool:
    """`Accept: image/png` (and not JSON as well): the one image as the body."""
    accepted = [part.split(";")[0].strip() for part in request.headers.get("accept", "").split(",")]
    return PNG in accepted and "application/json" not in accepted


def encode_progress(event: generator_pb2.GenerateProgress) -> tuple[str, dict[str, Any]]:
    if event.HasField("progress"):
        return "progress", StepOut.of(event.progress).model_dump()
    return "result", GenerateResult.of(event.result).model_dump()


def router(context: Context, identity: Any) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["generate"])
    backend = context.backend

    @routes.post(
        "/generate",
        response_model=GenerateResult,
        responses={200: {"content": {PNG: {}}, "description": "JSON, or the image itself with `Accept: image/png`"}},
    )
    async def generate(body: GenerateBody, request: Request, who: Identity = identity) -> Any:
        """Generate (unary). With `Accept: image/png` and one image, the body is the PNG and the
        seed and resolved concepts come as `X-Cdserve-Seed` / `X-Cdserve-Concepts` headers."""
        png = wants_png(request)
        if png and body.num_images > 1:
            raise InvalidArgument(
                f"num_images {body.num_images} with Accept: image/png; ask for one image or accept application/json",
                field="num_images",
            )
        response = await backend.generate(body.to_proto(), who.caller)
        if png:
            headers = {"X-Cdserve-Seed": str(response.seed), "X-Cdserve-Concepts": ",".join(response.concepts)}
            return Response(response.images[0].png, media_type=PNG, headers=headers)
        return GenerateResult.of(response)

    @routes.post(
        "/generate/stream",
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`progress` events ({step, total_steps, elapsed_ms}), then one `result` "
                "(as /v1/generate returns); a late failure is an `error` event",
            }
        },
    )
    async def generate_stream(body: GenerateBody, who: Identity = identity) -> Any:
        """GenerateStream as server-sent events."""
        events = backend.generate_stream(body.to_proto(), who.caller)
        return await event_stream(aiter(events), encode_progress)

    return routes
