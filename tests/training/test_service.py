"""The Training service over real gRPC: every validation error, auth, and the full round trip
Submit → Ray Job (Ray Train inside) → Publish → the concept in the registry."""

from __future__ import annotations

import io
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from proto import training_pb2
from shared import artifact
from shared.errors import InvalidArgument, NotFound, Unauthenticated
from shared.registry_client import RegistryClient
from training.client import TrainingClient, uploads_from_folder
from training.service.config import SubmitLimits
from training.service.server import start_training_service
from training.service.submission import Submission

from .conftest import LoopThread, training_stack, write_images

TOKENS = {"tok-acme": "acme", "tok-beta": "beta"}
LIMITS = SubmitLimits(
    max_concepts=3, max_images_per_concept=3, max_image_bytes=20_000, max_image_side=512, max_steps=50
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_base_dir):
    with training_stack(tmp_path_factory.mktemp("stack"), tiny_base_dir, LIMITS, TOKENS) as started:
        yield started


@pytest.fixture
def acme(stack):
    with TrainingClient(f"127.0.0.1:{stack.service.port}", token="tok-acme") as client:
        yield client


def spec_of(*concepts: training_pb2.ConceptSpec, **recipe) -> training_pb2.TrainingSpec:
    return training_pb2.TrainingSpec(concepts=list(concepts), recipe=training_pb2.Recipe(**recipe))


def dog(**fields) -> training_pb2.ConceptSpec:
    return training_pb2.ConceptSpec(
        **{"concept_id": "my-dog", "category": "dog", "regularization": training_pb2.NONE, **fields}
    )


def png(size: tuple[int, int] = (16, 16), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(
    data: bytes | None = None, index: int = 0, caption: str = "", alternatives: tuple[str, ...] = ()
) -> training_pb2.ImageUpload:
    return training_pb2.ImageUpload(
        concept_index=index, filename="x.png", caption=caption, alternative_captions=alternatives, data=data or png()
    )


NOISE = bytes(range(256)) * 100  # 25.6 kB of undecodable bytes, over the 20 kB limit
BAD_SUBMISSIONS = {
    "no images": (spec_of(dog()), [], "spec.concepts[0].image_uris"),
    "no concepts": (spec_of(), [], "spec.concepts"),
    "too many concepts": (spec_of(*(dog(concept_id=f"d{i}") for i in range(4))), [], "spec.concepts"),
    "too many images": (spec_of(dog()), [upload()] * 4, "image[3].concept_index"),
    "undecodable image": (spec_of(dog()), [upload(b"not an image at all")], "image[0].data"),
    "oversized image bytes": (spec_of(dog()), [upload(NOISE)], "image[0].data"),
    "oversized image side": (spec_of(dog()), [upload(png((600, 8)))], "image[0].data"),
    "unknown concept index": (spec_of(dog()), [upload(index=1)], "image[0].concept_index"),
    "zero steps": (spec_of(dog(), steps=0), [upload()], "spec.recipe.steps"),
    "steps over the service limit": (spec_of(dog(), steps=51), [upload()], "spec.recipe.steps"),
    "unknown mode": (spec_of(dog(), mode="lora"), [upload()], "spec.recipe.mode"),
    "bench-only mode full": (spec_of(dog(), mode="full"), [upload()], "spec.recipe.mode"),
    "bench-only mode kv_frozen_token": (spec_of(dog(), mode="kv_frozen_token"), [upload()], "spec.recipe.mode"),
    "negative learning rate": (spec_of(dog(), learning_rate=-1.0), [upload()], "spec.recipe.learning_rate"),
    "stand-in probability above 1": (
        spec_of(dog(), stand_in_probability=1.5),
        [upload()],
        "spec.recipe.stand_in_probability",
    ),
    "threshold above one": (
        spec_of(dog(), reg_similarity_threshold=1.5),
        [upload()],
        "spec.recipe.reg_similarity_threshold",
    ),
    "batch not divisible by workers": (spec_of(dog(), batch_size=3, num_workers=2), [upload()], "spec.recipe"),
    "bad concept id": (spec_of(dog(concept_id="My Dog!")), [upload()], "spec.concepts[0]"),
    "concept id ending in a newline": (spec_of(dog(concept_id="my-dog\n")), [upload()], "spec.concepts[0]"),
    "modifier token ending in a newline": (spec_of(dog(modifier_token="<cd-dog>\n")), [upload()], "spec.concepts[0]"),
    "caption without the token": (spec_of(dog()), [upload(caption="a photo of a dog")], "spec.concepts[0]"),
    "alternative caption without the token": (
        spec_of(dog()),
        [upload(caption="a V* dog", alternatives=("a dog",))],
        "spec.concepts[0]",
    ),
    "too many wordings of a caption": (spec_of(dog()), [upload(alternatives=("a V* dog",) * 40)], "spec.concepts[0]"),
    "alternative captions not one per image_uri": (
        spec_of(dog(image_uris=["/nonexistent/a.png"], alternative_captions=[training_pb2.AlternativeCaptions()] * 2)),
        [],
        "spec.concepts[0].alternative_captions",
    ),
    "relative image uri": (spec_of(dog(image_uris=["images/a.png"])), [], "spec.concepts[0].image_uris[0]"),
    "missing image uri": (spec_of(dog(image_uris=["/nonexistent/a.png"])), [], "spec.concepts[0].image_uris[0]"),
    "real regularisation without a folder": (
        spec_of(dog(regularization=training_pb2.REAL)),
        [upload()],
        "spec.concepts[0]",
    ),
}


@pytest.mark.bad_input(service="Training/Submit", code="INVALID_ARGUMENT")
@pytest.mark.parametrize("name", list(BAD_SUBMISSIONS))
def test_invalid_submissions_are_rejected_naming_the_field(name, acme, stack):
    spec, uploads, field = BAD_SUBMISSIONS[name]
    jobs_before = sorted((stack.root / "training" / "jobs").iterdir())
    with pytest.raises(InvalidArgument) as error:
        acme.submit(spec, uploads)
    assert error.value.field == field, error.value.message
    assert sorted((stack.root / "training" / "jobs").iterdir()) == jobs_before  # nothing left behind


def test_a_submission_gives_each_image_its_caption_and_alternative_wordings(tmp_path):
    referenced = write_images(tmp_path / "uris", 2)
    submission = Submission(tmp_path / "job", LIMITS, roots=[tmp_path / "uris"])
    spec = spec_of(
        dog(
            image_uris=referenced,
            captions=["a V* dog on grass", ""],
            alternative_captions=[
                training_pb2.AlternativeCaptions(captions=["photo of a V* dog"]),
                training_pb2.AlternativeCaptions(),
            ],
        )
    )
    submission.accept(training_pb2.SubmitRequest(spec=spec))
    submission.accept(training_pb2.SubmitRequest(image=upload(alternatives=("a V* dog asleep",))))
    concept = submission.train_config(base_model="tiny", output_dir=tmp_path / "out").concepts[0]
    assert concept.image_captions() == [
        ("a <cd-my-dog> dog on grass", "photo of a <cd-my-dog> dog"),
        ("photo of a <cd-my-dog> dog",),
        ("photo of a <cd-my-dog> dog", "a <cd-my-dog> dog asleep"),  # an upload's empty caption is the default
    ]


def refusal(client: TrainingClient, uri: str) -> tuple[str, str, str]:
    with pytest.raises(InvalidArgument) as error:
        client.submit(spec_of(dog(image_uris=[uri])), [])
    return type(error.value).__name__, error.value.field, error.value.message


@pytest.mark.bad_input(
    "image_uris outside the allowed roots (directly, by '..', by a symlink) or missing: one answer",
    service="Training/Submit",
    code="INVALID_ARGUMENT",
)
def test_server_paths_outside_the_allowed_roots_and_missing_ones_get_one_answer(stack, acme, tmp_path):
    """No existence oracle: whether a path is outside the roots (directly, by '..' or through a
    symlink) or missing inside them, the caller gets the same code, field and message."""
    outside = Path(write_images(stack.root / "outside", 1)[0])
    link = stack.images_root / "link.png"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    jobs_before = sorted((stack.root / "training" / "jobs").iterdir())
    answers = {
        "present, outside the roots": refusal(acme, str(outside)),
        "system file": refusal(acme, "/etc/passwd"),
        "'..' out of a root": refusal(acme, f"{stack.images_root}/../outside/{outside.name}"),
        "symlink out of a root": refusal(acme, str(link)),
        "missing inside a root": refusal(acme, str(stack.images_root / "missing.png")),
        "a folder inside a root": refusal(acme, f"file://{stack.images_root}"),
    }
    assert len(set(answers.values())) == 1, answers
    assert answers["missing inside a root"][1] == "spec.concepts[0].image_uris[0]"
    assert sorted((stack.root / "training" / "jobs").iterdir()) == jobs_before


def test_a_server_path_inside_a_root_is_copied_into_the_job(tmp_path):
    root = tmp_path / "root"
    image = Path(write_images(root / "dogs", 1)[0])
    (root / "alias.png").symlink_to(image)  # a symlink that stays inside the root is fine
    submission = Submission(tmp_path / "job", LIMITS, roots=[root])
    uris = [str(image), f"file://{root}/dogs/../alias.png"]
    submission.accept(training_pb2.SubmitRequest(spec=spec_of(dog(image_uris=uris))))
    images = submission.train_config(base_model="tiny", output_dir=tmp_path / "out").concepts[0].images
    assert [Path(p).parent for p in images] == [tmp_path / "job" / "images" / "0"] * 2
    assert all(Path(p).read_bytes() == image.read_bytes() for p in images)
    with pytest.raises(InvalidArgument):  # and without roots, no server path at all
        Submission(tmp_path / "job2", LIMITS).accept(training_pb2.SubmitRequest(spec=spec_of(dog(image_uris=uris))))


@pytest.mark.bad_input("no token", service="Training/Submit", code="UNAUTHENTICATED")
@pytest.mark.bad_input(
    "no token (the message says the job is private, not that the call writes)",
    service="Training/Get",
    code="UNAUTHENTICATED",
)
@pytest.mark.bad_input("no token", service="Training/Watch", code="UNAUTHENTICATED")
@pytest.mark.bad_input("unknown bearer token", service="Training/List", code="UNAUTHENTICATED")
@pytest.mark.bad_input("unknown job id", service="Training/Get", code="NOT_FOUND")
def test_calls_need_a_known_token_and_see_only_their_tenant(stack, acme):
    target = f"127.0.0.1:{stack.service.port}"
    with TrainingClient(target) as anonymous:
        with pytest.raises(Unauthenticated) as submit_error:
            anonymous.submit(spec_of(dog()), [upload()])
        for read in (lambda: anonymous.get("no-such-job"), lambda: list(anonymous.watch("no-such-job", timeout_s=30))):
            with pytest.raises(Unauthenticated) as read_error:
                read()
            assert "writes" not in read_error.value.message and "private to their tenant" in read_error.value.message
    assert "submits it" in submit_error.value.message
    with TrainingClient(target, token="tok-wrong") as stranger, pytest.raises(Unauthenticated):
        stranger.list()
    with pytest.raises(NotFound):
        acme.get("no-such-job")


def test_submit_runs_a_ray_job_that_publishes_to_the_registry(tmp_path, stack, acme):
    folder = tmp_path / "images"
    write_images(folder, 2)
    (folder / "captions.txt").write_text("000.png\ta V* dog on grass\n000.png\tphoto of a V* dog on grass\n")
    spec = spec_of(dog(), steps=2, batch_size=2, checkpoint_every=1, sample_every=1)
    job = acme.submit(spec, uploads_from_folder(folder))
    assert job.state == training_pb2.PENDING and job.ray_job_id == job.job_id

    updates = list(acme.watch(job.job_id, timeout_s=240))
    states = [update.state for update in updates]
    final = acme.get(job.job_id)
    assert final.state == training_pb2.SUCCEEDED, final.message
    assert states[-1] == training_pb2.SUCCEEDED and training_pb2.RUNNING in states
    assert (final.step, final.total_steps) == (2, 2) and final.loss > 0 and final.finished_ms >= final.started_ms
    assert final.published == ["my-dog@1"]
    # a sample every step, rendered with the weights so far; Watch sent the last one when it appeared
    assert (final.sample.step, final.sample.prompt) == (2, "a <cd-my-dog> dog on grass")
    with Image.open(io.BytesIO(final.sample.png)) as image:
        assert image.format == "PNG" and image.size[0] == image.size[1] > 0
    assert any(update.sample.step == 2 and update.sample.png == final.sample.png for update in updates)

    # the job published with a token minted for it, never with the submitter's
    job_dir = stack.root / "training" / "jobs" / job.job_id
    ray_job = stack.jobs.get_job_info(job.ray_job_id)
    assert "tok-acme" not in repr(ray_job.runtime_env) + repr(ray_job.entrypoint) + (job_dir / "job.json").read_text()
    minted = job_dir / "publish.token"
    assert minted.stat().st_mode & 0o777 == 0o600 and minted.read_text().startswith("cdjob.")

    with RegistryClient(f"127.0.0.1:{stack.registry.port}", token="tok-acme") as registry:
        info = registry.get("my-dog@1")
        concept = artifact.from_bytes(registry.fetch("my-dog@1"), base=stack.spec)
    assert info.tenant == "acme" and dict(info.labels) == {"training_job": job.job_id}
    assert concept.header.concepts[0].captions == [  # a file listed twice in captions.txt: two wordings
        "a <cd-my-dog> dog on grass",
        "photo of a <cd-my-dog> dog on grass",
        "photo of a <cd-my-dog> dog",
    ]
    assert concept.header.metrics["steps"] == 2

    listed = acme.list(state=training_pb2.SUCCEEDED)
    assert [j.job_id for j in listed.jobs] == [job.job_id]
    assert not listed.jobs[0].HasField("sample")  # List stays small: samples come with Get and Watch
    with TrainingClient(f"127.0.0.1:{stack.service.port}", token="tok-beta") as beta, pytest.raises(NotFound):
        beta.get(job.job_id)

    def scrape() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{stack.service.metrics_port}/metrics").read().decode()

    deadline = time.monotonic() + 10  # the job counts are refreshed every poll interval
    while 'cdserve_training_jobs{state="SUCCEEDED"} 1.0' not in (metrics := scrape()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert 'cdserve_training_jobs{state="SUCCEEDED"} 1.0' in metrics
    assert "cdserve_training_step_seconds_count" in metrics


def test_a_job_whose_launch_was_interrupted_fails_at_the_next_start(tmp_path, stack, tiny_base_dir):
    """The service stopped after recording a job but before Ray received it: on restart it is FAILED."""
    from training.service.store import JobRecord, JobStore

    data = tmp_path / "training"
    data.mkdir()
    store = JobStore(data / "jobs.sqlite3")
    store.insert(
        JobRecord("never-launched", "acme", "PENDING", 1, str(tmp_path / "job"), b"", ray_job_id="never-launched")
    )
    store.close()
    config = stack.service.service._config.model_copy(update={"data_dir": data, "port": 0, "metrics_port": None})
    loop = LoopThread()
    service = loop.run(start_training_service(config, tokens={"tok-acme": "acme"}))
    try:
        with TrainingClient(f"127.0.0.1:{service.port}", token="tok-acme") as client:
            job = client.get("never-launched")
        assert job.state == training_pb2.FAILED and "restarted" in job.message
    finally:
        loop.run(service.stop(0))
        loop.close()


def test_the_cli_watch_line_shows_a_restart_of_the_workers():
    from training.cli import _describe

    first = training_pb2.TrainingJob(state=training_pb2.RUNNING, step=144, total_steps=400, attempt=1)
    resumed = training_pb2.TrainingJob(
        state=training_pb2.RUNNING, step=104, total_steps=400, attempt=2, resumed_from_step=100
    )
    assert "attempt" not in _describe(first)
    assert _describe(resumed).endswith("step 104/400 loss 0.0000 eta 0s (attempt 2, resumed at step 100)")
