"""The Ray Serve deployment of the Generator gRPC service: a thin shell around `ReplicaCore`.

Method names are the RPC names (Serve's gRPC proxy routes by them). Each RPC authenticates its
caller from the `authorization` metadata (`serving.auth`), then runs as `generate_as` /
`generate_stream_as` do for callers other ingresses authenticated. Both RPCs go through one
`BatchQueue` (not `@serve.batch`, which cuts small batches under a backlog; see `serving.batcher`),
so unary and streaming requests with different concepts share UNet batches; concept ids travel in
the payload (never as multiplexed ids, which would split batches). Errors are mapped to status
codes by `shared.grpc_status` only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from ray import serve
from ray.serve.grpc_util import RayServegRPCContext

from proto import generator_pb2
from serving import refusal_log
from serving.auth import GenerateAuthenticator
from serving.batcher import BatchQueue
from serving.config import ServingConfig
from serving.metrics import ServingMetrics
from serving.replica import Outcome, PendingRequest, build_replica
from shared.auth import Caller
from shared.grpc_status import detail_for, status_for
from shared.progress import ProgressCallback


@serve.deployment(name="Generator")
class Generator:
    def __init__(self, config_json: str) -> None:
        config = ServingConfig.model_validate_json(config_json)
        refusal_log.install()
        self.metrics = ServingMetrics()
        self.auth = GenerateAuthenticator(config.auth)
        replica_id = serve.get_replica_context().replica_id.unique_id
        self.replica = build_replica(config, replica=replica_id, observer=self.metrics)
        self.core = self.replica.core
        self.batches: BatchQueue[PendingRequest, Outcome] = BatchQueue(
            self._run_batch,
            max_batch_size=config.batching.max_batch_size,
            batch_wait_timeout_s=config.batching.batch_wait_timeout_s,
            discard=lambda pending: pending.resolved.release(),
        )

    def __del__(self) -> None:
        self.batches.close()
        self.replica.close()

    async def Generate(
        self, request: generator_pb2.GenerateRequest, grpc_context: RayServegRPCContext
    ) -> generator_pb2.GenerateResponse:
        with _status_on(grpc_context), self._measured("Generate"):
            return await self._generate(request, self._authenticate(grpc_context))

    async def GenerateStream(
        self, request: generator_pb2.GenerateRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[generator_pb2.GenerateProgress]:
        with _status_on(grpc_context), self._measured("GenerateStream"):
            async for event in self._generate_stream(request, self._authenticate(grpc_context)):
                yield event

    async def generate_as(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> generator_pb2.GenerateResponse:
        """Generate for a caller another ingress has authenticated (the HTTP face, through a
        deployment handle). Failures raise the typed `shared.errors`."""
        with self._measured("Generate"):
            return await self._generate(request, caller)

    async def generate_stream_as(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> AsyncIterator[generator_pb2.GenerateProgress]:
        """GenerateStream for a caller another ingress has authenticated: progress per step, then
        the result (call the handle with `.options(stream=True)`)."""
        with self._measured("GenerateStream"):
            async for event in self._generate_stream(request, caller):
                yield event

    def cache_stats(self) -> dict[str, object]:
        """Plain counters of this replica's concept cache (for tests and operators via a handle)."""
        return {
            **self.replica.stats.snapshot(),
            "hit_rate": self.replica.stats.hit_rate(),
            "replica": self.core.replica,
        }

    def _authenticate(self, grpc_context: RayServegRPCContext) -> Caller:
        return self.auth.caller_from_metadata(grpc_context.invocation_metadata())

    async def _generate(self, request: generator_pb2.GenerateRequest, caller: Caller) -> generator_pb2.GenerateResponse:
        return await self._submit(await self._prepare(request, caller, None))

    async def _generate_stream(
        self, request: generator_pb2.GenerateRequest, caller: Caller
    ) -> AsyncIterator[generator_pb2.GenerateProgress]:
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue[generator_pb2.StepProgress] = asyncio.Queue()

        received = time.perf_counter()

        def on_progress(step: int, total: int) -> None:
            elapsed_ms = (time.perf_counter() - received) * 1000.0
            progress = generator_pb2.StepProgress(step=step, total_steps=total, elapsed_ms=elapsed_ms)
            loop.call_soon_threadsafe(steps.put_nowait, progress)

        result = asyncio.ensure_future(self._submit(await self._prepare(request, caller, on_progress)))
        while not result.done():
            next_step = asyncio.ensure_future(steps.get())
            await asyncio.wait({next_step, result}, return_when=asyncio.FIRST_COMPLETED)
            if next_step.done():
                yield generator_pb2.GenerateProgress(progress=next_step.result())
            else:
                next_step.cancel()
        while not steps.empty():  # steps posted before the batch returned
            yield generator_pb2.GenerateProgress(progress=steps.get_nowait())
        yield generator_pb2.GenerateProgress(result=result.result())

    @contextmanager
    def _measured(self, method: str) -> Iterator[None]:
        started, code = time.perf_counter(), "OK"
        try:
            yield
        except Exception as e:
            code = status_for(e).name
            raise
        finally:
            self.metrics.request_done(method, code, time.perf_counter() - started)

    async def _prepare(
        self, request: generator_pb2.GenerateRequest, caller: Caller, on_progress: ProgressCallback | None
    ) -> PendingRequest:
        """Validation and concept resolution run in a thread (they may fetch or merge). Should the
        caller go away meanwhile, the lease of what was resolved is released when it finishes."""
        work = asyncio.ensure_future(asyncio.to_thread(self.core.prepare, request, caller, on_progress))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(_release_when_prepared)
            raise

    async def _submit(self, pending: PendingRequest) -> generator_pb2.GenerateResponse:
        try:
            outcome = await self.batches.submit(pending)
        except asyncio.CancelledError:  # deadline or disconnect: skip the work if not started yet
            pending.cancelled = True
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        self.metrics.response(outcome)
        return outcome

    def _run_batch(self, pending: list[PendingRequest]) -> list[Outcome]:
        for size in Counter(p.request.sampling_key for p in pending if not p.cancelled).values():
            self.metrics.batch(size)
        return self.core.run_batch(pending)


@contextmanager
def _status_on(grpc_context: RayServegRPCContext) -> Iterator[None]:
    """Set the status a failure maps to on the call, then let it propagate: Serve sends that code
    and details, and `serving.proxy_status` adds the ErrorDetail trailer in the proxy."""
    try:
        yield
    except Exception as e:
        grpc_context.set_code(status_for(e))
        grpc_context.set_details(detail_for(e).message)
        raise


def _release_when_prepared(work: asyncio.Future[PendingRequest]) -> None:
    if not work.cancelled() and work.exception() is None:
        work.result().resolved.release()
