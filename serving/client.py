"""A small synchronous client of the Generator service (through Serve's gRPC proxy).

Failures surface as the typed `shared.errors` the server raised (rebuilt by `shared.grpc_status`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import grpc

from proto import generator_pb2, generator_pb2_grpc
from shared.grpc_status import error_from_rpc

MiB = 2**20
MODES = {"merge": generator_pb2.MERGE, "naive_sum": generator_pb2.NAIVE_SUM}
StepCallback = Callable[[generator_pb2.StepProgress], None]


class GeneratorClient:
    """One channel to a Serve gRPC proxy at `target`; `application` picks the Serve app by name."""

    def __init__(self, target: str, *, application: str = "cdserve", timeout_s: float = 300.0, max_message_bytes: int = 64 * MiB) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = generator_pb2_grpc.GeneratorStub(self._channel)
        self._metadata = (("application", application),)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GeneratorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
            prompt=prompt, negative_prompt=negative_prompt, concepts=list(concepts), multi_concept=MODES[multi_concept],
            steps=steps, guidance_scale=guidance_scale, seed=seed, width=width, height=height, num_images=num_images,
            scheduler=scheduler, request_id=request_id,
        )  # fmt: skip

    def generate(self, request: generator_pb2.GenerateRequest, *, timeout_s: float | None = None) -> generator_pb2.GenerateResponse:
        try:
            return self._stub.Generate(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def stream(self, request: generator_pb2.GenerateRequest, *, timeout_s: float | None = None) -> Iterator[generator_pb2.GenerateProgress]:
        """Progress after every denoising step, then one message with the result."""
        try:
            yield from self._stub.GenerateStream(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

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
