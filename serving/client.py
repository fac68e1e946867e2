"""A small synchronous client of the Generator service (through Serve's gRPC proxy).

Failures surface as the typed `shared.errors` the server raised (rebuilt by `shared.grpc_status`).
Generate and GenerateStream are retried by gRPC on UNAVAILABLE before the server answers (a
replica that died, a proxy with no replica yet; see `shared.rpc_client`): generating changes no
server state, so a repeat is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Unpack

from proto import generator_pb2, generator_pb2_grpc
from shared.rpc_client import ChannelOptions, MiB, RpcClient

MODES = {"merge": generator_pb2.MERGE, "naive_sum": generator_pb2.NAIVE_SUM}
StepCallback = Callable[[generator_pb2.StepProgress], None]


class GeneratorClient(RpcClient):
    """One channel to a Serve gRPC proxy (or a TLS front before it) at `target`.

    `application` picks the Serve app by name; `token` is the caller's bearer token (it decides
    which concepts the caller may use); `tls_ca_file` switches to TLS, trusting that PEM bundle.
    """

    SERVICE = generator_pb2.DESCRIPTOR.services_by_name["Generator"]
    STUB = generator_pb2_grpc.GeneratorStub
    RETRIED_METHODS = ("Generate", "GenerateStream")

    TIMEOUT_S = 300.0
    MAX_MESSAGE_BYTES = 64 * MiB

    def __init__(self, target: str, *, application: str = "cdserve", **options: Unpack[ChannelOptions]) -> None:
        super().__init__(target, metadata=[("application", application)], **options)

    @staticmethod
    def request(
        prompt: str,
        *,
        concepts: Sequence[str] = (),
        multi_concept: str = "merge",
        negative_prompt: str = "",
        steps: int = 0,
        guidance_scale: float = 0.0,
        seed: int | None = None,
        width: int = 0,
        height: int = 0,
        num_images: int = 0,
        scheduler: str = "",
        request_id: str = "",
    ) -> generator_pb2.GenerateRequest:
        """A GenerateRequest; zeros and empty strings mean the server's defaults."""
        return generator_pb2.GenerateRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            concepts=list(concepts),
            multi_concept=MODES[multi_concept],
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            width=width,
            height=height,
            num_images=num_images,
            scheduler=scheduler,
            request_id=request_id,
        )

    def generate(
        self, request: generator_pb2.GenerateRequest, *, timeout_s: float | None = None
    ) -> generator_pb2.GenerateResponse:
        return self._call(self._stub.Generate, request, timeout_s=timeout_s)

    def stream(
        self, request: generator_pb2.GenerateRequest, *, timeout_s: float | None = None
    ) -> Iterator[generator_pb2.GenerateProgress]:
        """Progress after every denoising step, then one message with the result."""
        return self._stream(self._stub.GenerateStream, request, timeout_s=timeout_s or self.timeout_s)

    def generate_with_progress(
        self, request: generator_pb2.GenerateRequest, on_step: StepCallback, *, timeout_s: float | None = None
    ) -> generator_pb2.GenerateResponse:
        """GenerateStream, calling `on_step` per step; returns the final response."""
        for event in self.stream(request, timeout_s=timeout_s):
            if event.HasField("progress"):
                on_step(event.progress)
            else:
                return event.result
        raise ConnectionError("the stream ended without a result")
