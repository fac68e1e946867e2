"""/v1/trainings: the Training service over JSON and multipart, as a gRPC client that carries the
caller's own token (the service decides what the caller may submit and see)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import UploadFile

from proto import training_pb2
from serving.http.api import Context, Identity
from serving.http.schemas import TrainingJobOut, training_spec
from serving.http.sse import event_stream
from shared.errors import InvalidArgument, Unavailable
from training.client import TrainingClient, uploads_from_folder
from training.regularization import CAPTIONS_FILE, IMAGE_SUFFIXES

IMAGES_FIELD = re.compile(r"images(?:\.([0-9]+))?")
MAX_FORM_FILES = 4096
SUBMIT_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["spec", "images"],
            "properties": {
                "spec": {"type": "string", "description": "a TrainingSpec in the proto's JSON form"},
                "images": {
                    "type": "array",
                    "items": {"type": "string", "format": "binary"},
                    "description": "the first concept's images, and optionally its captions.txt "
                    "('file<TAB>caption' per line, V* where the token goes); "
                    "`images.1`, `images.2`… for the further concepts of a joint job",
                },
            },
        }
    }
}


def encode_job(job: training_pb2.TrainingJob) -> tuple[str, dict[str, Any]]:
    return "job", TrainingJobOut.of(job).model_dump()


async def save_uploads(form: Any, folder: Path) -> list[training_pb2.ImageUpload]:
    """The form's files, one folder per concept, read as the CLI reads an images folder (the same
    captions.txt convention); anything but PNG/JPEG images and captions.txt is refused."""
    counts: dict[str, int] = {}
    for key, value in form.multi_items():
        match = IMAGES_FIELD.fullmatch(key)
        if match is None or not isinstance(value, UploadFile):
            continue
        index = int(match.group(1) or 0)
        name = Path(value.filename or "").name
        field = f"{key}[{counts.setdefault(key, 0)}]"
        counts[key] += 1
        if name != CAPTIONS_FILE and Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidArgument(
                f"{field}: {value.filename!r} is neither a PNG/JPEG image nor {CAPTIONS_FILE}", field=field
            )
        target = folder / str(index) / name
        if target.exists():
            raise InvalidArgument(f"{field}: two files named {name!r} for concept {index}", field=field)
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(await value.read())
    indices = sorted(int(path.name) for path in folder.iterdir())
    return [upload for i in indices for upload in uploads_from_folder(folder / str(i), concept_index=i)]


def router(context: Context, identity: Any) -> APIRouter:
    routes = APIRouter(prefix="/v1/trainings", tags=["trainings"])
    config = context.config

    def training(who: Identity) -> TrainingClient:
        if config.training_address is None:
            raise Unavailable("this deployment has no training service", field="training")
        return TrainingClient(config.training_address, token=who.token, timeout_s=config.request_timeout_s)

    def call(who: Identity, method: str, *args: Any) -> TrainingJobOut:
        with training(who) as client:
            return TrainingJobOut.of(getattr(client, method)(*args))

    @routes.post(
        "", response_model=TrainingJobOut, openapi_extra={"requestBody": {"required": True, "content": SUBMIT_FORM}}
    )
    async def submit_training(request: Request, who: Identity = identity) -> TrainingJobOut:
        """Submit: a `spec` field and the images; the job starts PENDING."""
        async with request.form(max_files=MAX_FORM_FILES) as form:
            text = form.get("spec")
            if not isinstance(text, str):
                raise InvalidArgument("the form needs a 'spec' field: a TrainingSpec in JSON", field="spec")
            spec = training_spec(text)
            with tempfile.TemporaryDirectory(prefix="cdserve-upload-") as folder:
                uploads = await save_uploads(form, Path(folder))
                return await run_in_threadpool(call, who, "submit", spec, uploads)

    @routes.get("", response_model=list[TrainingJobOut])
    async def list_trainings(
        who: Identity = identity,
        state: Annotated[str, Query(description="PENDING, RUNNING… ('' : every state)")] = "",
    ) -> list[TrainingJobOut]:
        """List the caller's jobs (every job for the operator), newest first."""
        if state and state not in training_pb2.JobState.keys():
            raise InvalidArgument(
                f"state {state!r} is not one of {list(training_pb2.JobState.keys())[1:]}", field="state"
            )

        def read() -> list[TrainingJobOut]:
            jobs, token = [], ""
            with training(who) as client:
                while True:
                    page = client.list(
                        state=training_pb2.JobState.Value(state or "JOB_STATE_UNSPECIFIED"), page_token=token
                    )
                    jobs += [TrainingJobOut.of(job) for job in page.jobs]
                    if not (token := page.next_page_token):
                        return jobs

        return await run_in_threadpool(read)

    @routes.get("/{job_id}", response_model=TrainingJobOut)
    async def get_training(job_id: str, who: Identity = identity) -> TrainingJobOut:
        return await run_in_threadpool(call, who, "get", job_id)

    events_doc = "one `job` event (as GET returns) whenever the job changes, until it ends"

    @routes.get("/{job_id}/events", responses={200: {"content": {"text/event-stream": {}}, "description": events_doc}})
    async def watch_training(job_id: str, who: Identity = identity) -> Any:
        """Watch as server-sent events: step, loss and state as they change (a loss curve)."""
        client = training(who)
        return await event_stream(iterate_in_threadpool(client.watch(job_id)), encode_job, on_close=client.close)

    @routes.post("/{job_id}:cancel", response_model=TrainingJobOut)
    async def cancel_training(job_id: str, who: Identity = identity) -> TrainingJobOut:
        """Cancel (also `DELETE /v1/trainings/{job_id}`); a job that already ended is
        FAILED_PRECONDITION (400), cancelling a cancelled one is a no-op."""
        return await run_in_threadpool(call, who, "cancel", job_id)

    routes.add_api_route(
        "/{job_id}", cancel_training, methods=["DELETE"], response_model=TrainingJobOut, summary="Cancel Training"
    )

    return routes
