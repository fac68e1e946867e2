"""Synchronous client of the Training service (CLI, demo, tests). Failures surface as the typed
`shared.errors` error the server raised."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from proto import training_pb2, training_pb2_grpc
from shared.rpc_client import MiB, RpcClient
from training.regularization import captioned_images


def uploads_from_folder(folder: str | Path, *, concept_index: int = 0) -> list[training_pb2.ImageUpload]:
    """Every image of `folder` with its caption's wordings (`captioned_images`), as uploads."""
    return [
        training_pb2.ImageUpload(
            concept_index=concept_index,
            filename=path.name,
            caption=first,
            alternative_captions=more,
            data=path.read_bytes(),
        )
        for path, (first, *more) in captioned_images(folder)
    ]


class TrainingClient(RpcClient):
    """One channel to a training service at `target` ("host:port"); `token` is the caller's bearer
    token, `tls_ca_file` switches to TLS trusting that PEM bundle. Get, List, Cancel and Watch are
    retried by gRPC on UNAVAILABLE (see `shared.rpc_client`); Submit is not: it starts a job."""

    SERVICE = training_pb2.DESCRIPTOR.services_by_name["Training"]
    STUB = training_pb2_grpc.TrainingStub
    RETRIED_METHODS = ("Get", "List", "Cancel", "Watch")

    TIMEOUT_S = 120.0
    MAX_MESSAGE_BYTES = 32 * MiB

    def submit(
        self, spec: training_pb2.TrainingSpec, uploads: Iterable[training_pb2.ImageUpload] = ()
    ) -> training_pb2.TrainingJob:
        def messages() -> Iterator[training_pb2.SubmitRequest]:
            yield training_pb2.SubmitRequest(spec=spec)
            for upload in uploads:
                yield training_pb2.SubmitRequest(image=upload)

        return self._call_once(self._stub.Submit, messages())

    def get(self, job_id: str) -> training_pb2.TrainingJob:
        return self._call(self._stub.Get, training_pb2.GetJobRequest(job_id=job_id))

    def list(
        self,
        *,
        state: training_pb2.JobState = training_pb2.JOB_STATE_UNSPECIFIED,
        page_size: int = 0,
        page_token: str = "",
    ) -> training_pb2.ListJobsResponse:
        return self._call(
            self._stub.List, training_pb2.ListJobsRequest(state=state, page_size=page_size, page_token=page_token)
        )

    def cancel(self, job_id: str) -> training_pb2.TrainingJob:
        return self._call(self._stub.Cancel, training_pb2.CancelJobRequest(job_id=job_id))

    def watch(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[training_pb2.TrainingJob]:
        """The job's state whenever it changes, until it ends."""
        return self._stream(self._stub.Watch, training_pb2.GetJobRequest(job_id=job_id), timeout_s=timeout_s)
