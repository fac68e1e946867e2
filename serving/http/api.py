"""The FastAPI application: routes, the playground's static files, auth and body limits.

Plain FastAPI, no Ray: `Backend` is what the routes need from the Serve deployment (generation and
the mapping of a bearer token to a caller), so the Serve layer stays a thin shell around this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proto import generator_pb2
from serving.http.config import HttpConfig
from serving.http.errors import error_response, install_error_handlers
from serving.http.previews import Previews
from shared.auth import BEARER, Caller
from shared.errors import TooLarge

STATIC = Path(__file__).resolve().parent / "static"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {"application/json": {"example": {"reason": reason, "field": "", "message": "…"}}},
    }
    for status, text, reason in (
        (400, "Invalid argument or failed precondition", "INVALID_ARGUMENT"),
        (401, "Missing or unknown bearer token", "UNAUTHENTICATED"),
        (404, "Unknown, or not visible to the caller", "NOT_FOUND"),
        (413, "Body over the upload limit", "TOO_LARGE"),
        (429, "Overloaded; retry later", "CAPACITY_EXCEEDED"),
        (503, "A dependency is unreachable; retry later", "UNAVAILABLE"),
    )
}


class Backend(Protocol):
    """What the routes need from the serving side."""

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's `authorization` header names (UNAUTHENTICATED if it names none)."""
        ...

    async def generate(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> generator_pb2.GenerateResponse: ...

    def generate_stream(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> AsyncIterator[generator_pb2.GenerateProgress]: ...


@dataclass(frozen=True)
class Identity:
    """Who calls: the caller for the Generator, and the raw token forwarded to the registry and the
    training service, which check it themselves (their visibility rules, the caller's rights)."""

    caller: Caller
    token: str | None


@dataclass(frozen=True)
class Context:
    backend: Backend
    config: HttpConfig
    registry_address: str
    previews: Previews


def identity_dependency(backend: Backend) -> Callable[..., Identity]:
    def identity(authorization: Annotated[str | None, Header()] = None) -> Identity:
        caller = backend.caller(authorization)
        token = authorization[len(BEARER) :].strip() if authorization else None
        return Identity(caller, token)

    return identity


class BodyLimit:
    """Refuses a body over its route's limit with 413 and an ErrorDetail, before the route parses
    it: declared sizes at once, undeclared (chunked) ones as they arrive."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self._app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(limit, scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self._app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await self._refuse(limit, scope, receive, send)
                return
        await self._app(
            scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive), send
        )

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        error = TooLarge(
            f"the request body exceeds the limit of {limit} bytes; send fewer or smaller images", field="body"
        )
        await error_response(error)(scope, receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()  # e.g. http.disconnect, which streaming responses wait for
        return {"type": "http.disconnect"}

    return receive


def build_api(backend: Backend, *, config: HttpConfig, registry_address: str) -> FastAPI:
    from serving.http import concepts, generate, trainings

    api = FastAPI(
        docs_url=None,  # FastAPI's documentation pages load their scripts from the internet
        redoc_url=None,
        title="cdserve",
        summary="Stable Diffusion with Custom Diffusion concepts: the HTTP/JSON face of the gRPC services",
        version="1",
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(api)
    context = Context(backend, config, registry_address, Previews(config.preview, backend.generate))
    identity = Depends(identity_dependency(backend))
    for module in (generate, concepts, trainings):
        router: APIRouter = module.router(context, identity)
        api.include_router(router)

    @api.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @api.get("/playground/settings", include_in_schema=False)
    async def settings() -> dict[str, Any]:
        """What the page fills in: the training recipe of this deployment's base model."""
        return {"training": config.training_address is not None, "training_recipe": config.training_recipe}

    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    def limit_for(scope: Scope) -> int:
        path = scope["path"].rstrip("/")
        uploads = scope["method"] == "POST" and path.endswith(("/v1/trainings", "/v1/concepts"))
        return config.max_upload_bytes if uploads else config.max_body_bytes

    api.add_middleware(BodyLimit, limit_for=limit_for)
    return api
