"""The Training gRPC servicer: converts proto ↔ domain and delegates to `TrainingService`.

Typed errors propagate to the observability interceptor, which sets the status and detail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from proto import common_pb2, training_pb2, training_pb2_grpc
from shared.auth import current_caller
from shared.errors import InvalidArgument
from training.service.service import JobView, TrainingService


def job_message(view: JobView) -> training_pb2.TrainingJob:
    record, progress, sample = view.record, view.progress, view.sample
    spec = training_pb2.TrainingSpec()
    spec.ParseFromString(record.spec)
    error = progress.get("error") or {}
    message = record.message or (error.get("message", "") if error else "")
    return training_pb2.TrainingJob(
        job_id=record.job_id,
        tenant=record.tenant,
        state=training_pb2.JobState.Value(view.state),
        step=int(progress.get("step", 0)),
        total_steps=int(progress.get("total_steps", 0)),
        loss=float(progress.get("loss") or 0.0),
        eta_s=float(progress.get("eta_s") or 0.0),
        created_ms=record.created_ms,
        started_ms=int(progress.get("started_ms", 0)),
        finished_ms=int(progress.get("finished_ms", 0)),
        published=list(progress.get("published", [])),
        error=common_pb2.ErrorDetail(**error) if error else None,
        ray_job_id=record.ray_job_id,
        spec=spec,
        message=message,
        attempt=int(progress.get("attempt", 0)),
        resumed_from_step=int(progress.get("resumed_from_step", 0)),
        sample=training_pb2.TrainingSample(step=sample.step, prompt=sample.prompt, png=sample.png) if sample else None,
    )


READS = "training jobs are private to their tenant; reading or cancelling one needs that tenant's token"


class TrainingServicer(training_pb2_grpc.TrainingServicer):
    """Each RPC acts for the authenticated caller (`current_caller`): jobs are the tenant's own."""

    def __init__(self, service: TrainingService) -> None:
        self._service = service

    async def Submit(
        self, request_iterator: AsyncIterator[training_pb2.SubmitRequest], context: ServicerContext
    ) -> training_pb2.TrainingJob:
        tenant = current_caller().require_tenant("a training job belongs to the tenant that submits it")
        view = await self._service.submit(tenant, request_iterator)
        return job_message(view)

    async def Get(self, request: training_pb2.GetJobRequest, context: ServicerContext) -> training_pb2.TrainingJob:
        return job_message(await self._service.get(current_caller().require_tenant(READS), request.job_id))

    async def List(
        self, request: training_pb2.ListJobsRequest, context: ServicerContext
    ) -> training_pb2.ListJobsResponse:
        tenant = current_caller().require_tenant(READS)
        state = _state_filter(request.state)
        views, token = await self._service.list(
            tenant, state=state, page_size=request.page_size, page_token=request.page_token
        )
        return training_pb2.ListJobsResponse(jobs=[job_message(v) for v in views], next_page_token=token)

    async def Cancel(
        self, request: training_pb2.CancelJobRequest, context: ServicerContext
    ) -> training_pb2.TrainingJob:
        return job_message(await self._service.cancel(current_caller().require_tenant(READS), request.job_id))

    async def Watch(
        self, request: training_pb2.GetJobRequest, context: ServicerContext
    ) -> AsyncIterator[training_pb2.TrainingJob]:
        async for view in self._service.watch(current_caller().require_tenant(READS), request.job_id):
            yield job_message(view)


def _state_filter(number: int) -> str | None:
    """List's state filter by name; proto3 enums are open, so a number the proto does not name
    arrives too, and is the caller's mistake."""
    if number == training_pb2.JOB_STATE_UNSPECIFIED:
        return None
    if number not in training_pb2.JobState.values():
        raise InvalidArgument(f"state {number} is not a JobState", field="state")
    return training_pb2.JobState.Name(number)
