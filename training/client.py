"""Synchronous client of the Training service (CLI, demo, tests). Failures surface as the typed
`shared.errors` error the server raised."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc

from proto import training_pb2, training_pb2_grpc
from shared.grpc_status import error_from_rpc
from training.regularization import captioned_images

T = TypeVar("T")
MiB = 2**20


def uploads_from_folder(folder: str | Path, *, concept_index: int = 0) -> list[training_pb2.ImageUpload]:
    """Every image of `folder` with its caption's wordings (`captioned_images`), as uploads."""
    return [
        training_pb2.ImageUpload(concept_index=concept_index, filename=path.name, caption=first,
                                 alternative_captions=more, data=path.read_bytes())
        for path, (first, *more) in captioned_images(folder)
    ]  # fmt: skip


class TrainingClient:
    def __init__(self, target: str, *, token: str | None = None, timeout_s: float = 120.0) -> None:
        options = [("grpc.max_send_message_length", 32 * MiB), ("grpc.max_receive_message_length", 32 * MiB)]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = training_pb2_grpc.TrainingStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TrainingClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e

    def submit(
        self, spec: training_pb2.TrainingSpec, uploads: Iterable[training_pb2.ImageUpload] = ()
    ) -> training_pb2.TrainingJob:
        def messages() -> Iterator[training_pb2.SubmitRequest]:
            yield training_pb2.SubmitRequest(spec=spec)
            for upload in uploads:
                yield training_pb2.SubmitRequest(image=upload)

        return self._call(lambda: self._stub.Submit(messages(), timeout=self._timeout_s, metadata=self._metadata))

    def get(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.GetJobRequest(job_id=job_id)
        return self._call(lambda: self._stub.Get(request, timeout=self._timeout_s, metadata=self._metadata))

    def list(self, *, state: int = 0, page_size: int = 0, page_token: str = "") -> training_pb2.ListJobsResponse:
        request = training_pb2.ListJobsRequest(state=state, page_size=page_size, page_token=page_token)
        return self._call(lambda: self._stub.List(request, timeout=self._timeout_s, metadata=self._metadata))

    def cancel(self, job_id: str) -> training_pb2.TrainingJob:
        request = training_pb2.CancelJobRequest(job_id=job_id)
        return self._call(lambda: self._stub.Cancel(request, timeout=self._timeout_s, metadata=self._metadata))

    def watch(self, job_id: str, *, timeout_s: float | None = None) -> Iterator[training_pb2.TrainingJob]:
        """The job's state whenever it changes, until it ends."""
        stream = self._stub.Watch(training_pb2.GetJobRequest(job_id=job_id), timeout=timeout_s, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as e:
            raise error_from_rpc(e) from e
