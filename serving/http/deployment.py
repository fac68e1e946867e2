"""The Serve deployment of the HTTP face: a thin shell that hands `build_api` a backend made of a
handle to the Generator deployment and the same authenticator the gRPC methods use."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentResponseGenerator

from proto import generator_pb2
from serving.auth import GenerateAuthenticator
from serving.config import ServingConfig
from serving.http.api import build_api
from serving.http.config import HttpConfig
from shared.auth import Caller

GENERATOR = "Generator"
"""The Generator deployment's name (by name: this replica need not import the engine)."""


@serve.deployment(name="Http")
@serve.ingress()
class HttpIngress:
    def __init__(self, serving_config_json: str, http_config_json: str) -> None:
        serving = ServingConfig.model_validate_json(serving_config_json)
        config = HttpConfig.model_validate_json(http_config_json)
        self._auth = GenerateAuthenticator(serving.auth)
        self._generator = serve.get_deployment_handle(GENERATOR, app_name=serving.app_name)
        self._api = build_api(self, config=config, registry_address=serving.registry.address)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._api

    def caller(self, authorization: str | None) -> Caller:
        return self._auth.caller(authorization)

    async def generate(self, request: generator_pb2.GenerateRequest, caller: Caller) -> generator_pb2.GenerateResponse:
        return await self._generator.generate_as.remote(request, caller)

    async def generate_stream(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> AsyncIterator[generator_pb2.GenerateProgress]:
        stream: DeploymentResponseGenerator = self._generator.options(stream=True).generate_stream_as.remote(
            request, caller
        )  # type: ignore[assignment]  # stream=True makes it a generator
        try:
            async for event in stream:
                yield event
        finally:
            stream.cancel()  # a caller that went away stops the replica's work (a no-op once it ended)
