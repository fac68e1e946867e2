"""Arbitrary values in every field of every Training request, on a real service (gRPC on 127.0.0.1,
its SQLite job store, job folders on disk): never INTERNAL or UNKNOWN, the service still answers its
health check, and a refused Submit or Cancel leaves the job table and the job folders as they were.

Jobs would run on Ray; the service here points at an address where none listens, so a submission
that passes every check fails at launch, as it would with Ray down, without training anything."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from proto import training_pb2, training_pb2_grpc
from serving.basemodels import materialize_tiny
from tests.fuzz.conftest import CALL_TIMEOUT_S, TOKENS, WATCH_S, fuzz_settings, metadata, outcome, serving
from tests.fuzz.messages import messages, one_field_changed
from tests.registry.conftest import TOKENS as SERVICE_TOKENS
from tests.training.conftest import LoopThread
from training.client import TrainingClient
from training.service.config import SubmitLimits, TrainingServiceConfig
from training.service.server import start_training_service

FINISHED = (training_pb2.SUCCEEDED, training_pb2.FAILED, training_pb2.CANCELLED)
NOWHERE = "http://127.0.0.1:9"
"""The discard port: a launch fails at once, as with Ray down."""


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class Service:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "server-images"
        self.images.mkdir()
        (self.images / "one.png").write_bytes(png())
        self.loop = LoopThread()
        config = TrainingServiceConfig(
            data_dir=root / "training",
            base_model=str(materialize_tiny(root / "tiny")),
            ray_address=NOWHERE,
            submit_timeout_s=5,
            metrics_port=None,
            allowed_image_roots=[self.images],
            poll_interval_s=0.5,
            shutdown_grace_s=0,
            limits=SubmitLimits(max_steps=50, max_workers=2),
        )
        self.handle = self.loop.run(start_training_service(config, tokens=dict(SERVICE_TOKENS)))
        self.target = f"127.0.0.1:{self.handle.port}"

    def snapshot(self) -> tuple[list[tuple[str, str, int]], list[str]]:
        """Every job the operator sees (id, tenant, state) and every job folder on disk, once every
        job has finished: an accepted job's launch moves it on by itself (to FAILED, here)."""
        deadline = time.monotonic() + 30
        while True:
            jobs = self._jobs()
            if all(state in FINISHED for _, _, state in jobs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return jobs, sorted(p.name for p in (self.root / "training" / "jobs").iterdir())

    def _jobs(self) -> list[tuple[str, str, int]]:
        with TrainingClient(self.target, token="tok-ops") as operator:
            jobs, token = [], ""
            while True:
                page = operator.list(page_size=100, page_token=token)
                jobs += [(job.job_id, job.tenant, job.state) for job in page.jobs]
                if not (token := page.next_page_token):
                    return sorted(jobs)

    def close(self) -> None:
        self.loop.run(self.handle.stop(0))
        self.loop.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("fuzz-training"))
    yield service
    service.close()


@pytest.fixture(scope="module")
def finished_job(service: Service) -> str:
    """A job that passed every check and failed at launch: something for job ids to find."""
    spec = training_pb2.TrainingSpec(
        concepts=[
            training_pb2.ConceptSpec(
                concept_id="fuzz-dog",
                category="dog",
                image_uris=[str(service.images / "one.png")],
                regularization=training_pb2.NONE,
            )
        ],
        recipe=training_pb2.Recipe(steps=1),
    )
    with TrainingClient(service.target, token="tok-acme") as acme:
        job = acme.submit(spec)
        for update in acme.watch(job.job_id, timeout_s=60):
            if update.state == training_pb2.FAILED:
                return job.job_id
    raise AssertionError("the launch to nowhere did not fail the job")


def hints(service: Service, job_id: str) -> dict[str, st.SearchStrategy]:
    images = [
        str(service.images / "one.png"),
        str(service.images),
        "/etc/passwd",
        f"file://{service.images}/one.png",
        "../server-images/one.png",
        str(service.images / ".." / "training"),
    ]
    return {
        "job_id": st.sampled_from([job_id, job_id.upper(), job_id + "\n"]),
        "concept_id": st.sampled_from(["fuzz-cat", "fuzz-dog"]),
        "category": st.just("cat"),
        "image_uris": st.sampled_from(images),
        "regularization_uri": st.sampled_from(images),
        "data": st.just(png()),
        "filename": st.sampled_from(["a.png", "../../a.png", "/etc/passwd"]),
        "steps": st.integers(1, 2),
    }


def valid_spec(service: Service) -> training_pb2.TrainingSpec:
    return training_pb2.TrainingSpec(
        concepts=[
            training_pb2.ConceptSpec(
                concept_id="fuzz-dog",
                category="dog",
                regularization=training_pb2.NONE,
                image_uris=[str(service.images / "one.png")],
            )
        ],
        recipe=training_pb2.Recipe(steps=1),
    )


def submissions(service: Service, job_id: str) -> st.SearchStrategy[list[training_pb2.SubmitRequest]]:
    """Any stream of Submit messages, or a valid submission with one field of the spec, of its
    concept or of its recipe changed."""
    known = hints(service, job_id)
    spec = valid_spec(service)
    as_stream = lambda s: [training_pb2.SubmitRequest(spec=s)]  # noqa: E731
    with_concept = lambda c: training_pb2.TrainingSpec(concepts=[c], recipe=spec.recipe)  # noqa: E731
    with_recipe = lambda r: training_pb2.TrainingSpec(concepts=spec.concepts, recipe=r)  # noqa: E731
    return st.one_of(
        st.lists(messages(training_pb2.SubmitRequest, known), max_size=4),
        one_field_changed(spec, known).map(as_stream),
        one_field_changed(spec.concepts[0], known).map(with_concept).map(as_stream),
        one_field_changed(spec.recipe, known).map(with_recipe).map(as_stream),
    )


def requests_of(name: str, service: Service, job_id: str) -> st.SearchStrategy:
    if name == "Submit":
        return submissions(service, job_id)
    method = training_pb2.DESCRIPTOR.services_by_name["Training"].methods_by_name[name]
    return messages(getattr(training_pb2, method.input_type.name), hints(service, job_id))


@pytest.mark.parametrize("name", ["Submit", "Get", "List", "Cancel", "Watch"])
def test_any_request_is_answered_cleanly_and_a_refused_one_changes_nothing(service, finished_job, name):
    with grpc.insecure_channel(service.target, options=[("grpc.enable_retries", 0)]) as channel:
        method = getattr(training_pb2_grpc.TrainingStub(channel), name)

        @fuzz_settings(default_examples=25)
        @given(request=requests_of(name, service, finished_job), token=TOKENS)
        def run(request, token):
            before = service.snapshot()
            sent = iter(request) if isinstance(request, list) else request
            answer = outcome(
                lambda: method(sent, metadata=metadata(token), timeout=WATCH_S if name == "Watch" else CALL_TIMEOUT_S)
            )
            answer.check(f"Training/{name}", may_time_out=name == "Watch")
            assert serving(channel)
            if answer.code != grpc.StatusCode.OK or name not in ("Submit", "Cancel"):
                assert service.snapshot() == before, f"{name} answered {answer.code.name} and changed the jobs"

        run()


@pytest.mark.bad_input(service="Training/List", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("state", [-(2**31), 7, 2**31 - 1], ids=lambda n: f"state {n} (not a JobState)")
def test_a_state_filter_the_proto_does_not_name_is_invalid_argument(service: Service, state: int) -> None:
    """Found by the fuzzer: such a filter was INTERNAL (proto3 enums are open, any number arrives)."""
    with grpc.insecure_channel(service.target) as channel:
        stub = training_pb2_grpc.TrainingStub(channel)
        request = training_pb2.ListJobsRequest(state=state)  # type: ignore[arg-type]  # the stub names only JobState values; proto3 enums take any int
        answer = outcome(lambda: stub.List(request, metadata=metadata("tok-acme"), timeout=CALL_TIMEOUT_S))
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT and "state" in answer.details


@pytest.mark.bad_input(service="Training/Submit", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("mode", [-(2**31), 4, 2**31 - 1], ids=lambda n: f"regularization {n} (no such mode)")
def test_a_regularization_mode_the_proto_does_not_name_is_invalid_argument(service: Service, mode: int) -> None:
    """Found by the fuzzer: such a mode was INTERNAL (a KeyError), and the refusal leaves no job behind."""
    spec = valid_spec(service)
    spec.concepts[0].regularization = mode
    before = service.snapshot()
    with grpc.insecure_channel(service.target) as channel:
        stub = training_pb2_grpc.TrainingStub(channel)
        submission = [training_pb2.SubmitRequest(spec=spec)]
        answer = outcome(lambda: stub.Submit(iter(submission), metadata=metadata("tok-acme"), timeout=CALL_TIMEOUT_S))
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT and "regularization" in answer.details
    assert service.snapshot() == before
