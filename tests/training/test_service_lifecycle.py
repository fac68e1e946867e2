"""The Training service's job lifecycle over real gRPC, Ray and SQLite: a training worker killed
and resumed from its checkpoint, Cancel (running, pending, finished, unknown, another tenant's),
Watch and List semantics (paging, state filter, tenants), and `cdserve train … --watch` end to end.

Ray jobs are expensive here (~25 s each before the first step), so the module runs two real
trainings (one whose worker is killed, then cancelled mid-run; one the CLI's) and one job cancelled
before it starts; module fixtures run each once and the tests read what they recorded, in any order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cli.main import main as cdserve
from proto import training_pb2
from shared import artifact
from shared.errors import Conflict, InvalidArgument, NotFound
from shared.registry_client import RegistryClient
from training.client import TrainingClient
from training.progress import ProgressFile
from training.service.config import SubmitLimits

from .conftest import training_stack, write_images
from .test_service import dog, spec_of, upload

TOKENS = {"tok-acme": "acme", "tok-beta": "beta", "tok-ops": "*"}
LONG_STEPS = 2000  # far more than the test waits for: the job is surely still training when cancelled
WAIT_S = 240
CHECKPOINT_EVERY = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_base_dir):
    limits = SubmitLimits(max_steps=LONG_STEPS)
    with training_stack(tmp_path_factory.mktemp("lifecycle"), tiny_base_dir, limits, TOKENS) as started:
        yield started


def client(stack, token: str) -> TrainingClient:
    return TrainingClient(stack.target, token=token)


def wait_for(condition, *, timeout_s: float = WAIT_S, every_s: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


def ray_job_ended(stack, ray_job_id: str) -> str:
    """Waits until Ray reports the job ended; returns its final status. (The service may still be
    handing a just-submitted job to Ray: until then Ray does not know the id.)"""

    def ended() -> str | None:
        try:
            status = stack.jobs.get_job_status(ray_job_id).value
        except RuntimeError:  # "Job … does not exist" yet
            return None
        return status if status in ("STOPPED", "SUCCEEDED", "FAILED") else None

    return wait_for(ended, timeout_s=90, what="the Ray job to end")


def live_actors(stack, ray_job_hex: str) -> list[str]:
    """Class names of the job's own actors not yet dead (Ray Train's controller and workers).
    Detached helpers (Train's PlacementGroupCleaner, the AutoscalingCoordinator singleton) outlive
    jobs by design and are left out. Asked of this module's cluster by address: other engineers'
    Ray clusters on the machine number their jobs alike."""
    from ray.util.state import list_actors

    filters = [("job_id", "=", ray_job_hex), ("state", "!=", "DEAD")]
    return [
        a.class_name for a in list_actors(address=stack.dashboard, filters=filters, detail=True) if not a.is_detached
    ]


def live_placement_groups(stack, ray_job_hex: str) -> list[str]:
    from ray.util.state import list_placement_groups

    filters = [("creator_job_id", "=", ray_job_hex), ("state", "!=", "REMOVED")]
    return [g.placement_group_id for g in list_placement_groups(address=stack.dashboard, filters=filters)]


def long_spec(concept_id: str, checkpoint_every: int = LONG_STEPS) -> training_pb2.TrainingSpec:
    return spec_of(dog(concept_id=concept_id), steps=LONG_STEPS, batch_size=2, checkpoint_every=checkpoint_every)


def refreshed(stack) -> None:
    """Returns once the service has re-read every job's state twice (one pass may have begun before)."""
    service = stack.service.service
    target = service.refresh_passes + 2
    wait_for(lambda: service.refresh_passes >= target, timeout_s=30, every_s=0.05, what="two refresh passes")


def kill_worker(stack, ray_job_hex: str) -> int:
    """SIGKILL the job's Ray Train worker process, as a crash or an OOM kill would."""
    from ray.util.state import list_actors

    filters = [("job_id", "=", ray_job_hex), ("state", "=", "ALIVE")]
    actors = list_actors(address=stack.dashboard, filters=filters, detail=True)
    workers = [a for a in actors if "Worker" in a.class_name]
    assert len(workers) == 1, workers
    os.kill(workers[0].pid, signal.SIGKILL)
    return workers[0].pid


class WatchRecorder:
    """A Watch stream read in a background thread, every message kept."""

    def __init__(self, stack, token: str, job_id: str) -> None:
        self.messages: list[training_pb2.TrainingJob] = []
        self._client = client(stack, token)
        self._thread = threading.Thread(target=self._follow, args=(job_id,), daemon=True)
        self._thread.start()

    def _follow(self, job_id: str) -> None:
        with self._client:
            self.messages.extend(self._client.watch(job_id, timeout_s=WAIT_S * 2))

    def join(self) -> list[training_pb2.TrainingJob]:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the Watch did not end with the job"
        return self.messages


@pytest.fixture(scope="module")
def cancelled_while_training(stack):
    """A job whose worker is killed once it has a checkpoint, left to resume from it, then cancelled;
    what each party saw along the way."""
    seen = {}
    with client(stack, "tok-acme") as acme, client(stack, "tok-beta") as beta:
        job = acme.submit(long_spec("long-dog", checkpoint_every=CHECKPOINT_EVERY), [upload()])
        watch = WatchRecorder(stack, "tok-acme", job.job_id)
        seen["before_kill"] = wait_for(
            lambda: (j := acme.get(job.job_id)).state == training_pb2.RUNNING and j.step > CHECKPOINT_EVERY and j,
            what="the job to train past its first checkpoint",
        )
        wait_for(lambda: checkpoint_registered(stack, job.job_id), what="Ray Train to register that checkpoint")
        ray_job_hex = stack.jobs.get_job_info(job.ray_job_id).job_id
        kill_worker(stack, ray_job_hex)
        running = seen["resumed"] = wait_for(
            lambda: (j := acme.get(job.job_id)).attempt == 2 and j.step > j.resumed_from_step and j,
            what="the workers to resume from the checkpoint and train on",
        )
        seen["actors_before"] = live_actors(stack, ray_job_hex)
        seen["groups_before"] = live_placement_groups(stack, ray_job_hex)
        with pytest.raises(NotFound) as seen["beta_cancel"]:
            beta.cancel(job.job_id)
        seen["after_beta"] = acme.get(job.job_id)
        seen["cancel_reply"] = acme.cancel(job.job_id)
        seen["ray_status"] = ray_job_ended(stack, running.ray_job_id)
        wait_for(lambda: not live_actors(stack, ray_job_hex), timeout_s=60, what="the job's actors to die")
        wait_for(lambda: not live_placement_groups(stack, ray_job_hex), timeout_s=60, what="its placement group")
        seen["progress_at_stop"] = ProgressFile(Path(stack.root) / "training" / "jobs" / job.job_id).read()
        refreshed(stack)  # nothing may revive the job
        seen["get"] = acme.get(job.job_id)
        seen["watch"] = list(acme.watch(job.job_id, timeout_s=30))
        seen["cancel_again"] = acme.cancel(job.job_id)
    seen["watch_throughout"] = watch.join()
    seen["job"], seen["running"] = job, running
    return seen


def checkpoint_registered(stack, job_id: str) -> bool:
    """Whether Ray Train's controller has recorded a checkpoint of the job: a worker that dies
    before that restarts from step 0, however far its progress file had got."""
    snapshots = (Path(stack.root) / "training" / "jobs" / job_id / "output" / "ray").glob(
        "*/checkpoint_manager_snapshot.json"
    )
    return any(json.loads(path.read_text()).get("latest_checkpoint_result") for path in snapshots)


@pytest.fixture(scope="module")
def cancelled_before_start(stack):
    with client(stack, "tok-acme") as acme:
        job = acme.submit(long_spec("early-dog"), [upload()])
        reply = acme.cancel(job.job_id)
        status = ray_job_ended(stack, job.ray_job_id)
        refreshed(stack)
        return {"job": job, "cancel_reply": reply, "ray_status": status, "get": acme.get(job.job_id)}


def train_argv(stack, folder: Path, concept_id: str) -> list[str]:
    """`cdserve train` of a dog from `folder` to the stack as tenant acme, without regularisation."""
    flags = {"--images": str(folder), "--category": "dog", "--id": concept_id}
    flags |= {"--server": stack.target, "--token": "tok-acme", "--reg": "none"}
    return ["train", *(part for flag in flags.items() for part in flag)]


@pytest.fixture(scope="module")
def cli_job(stack, tmp_path_factory):
    """`cdserve train … --watch` in this process: (exit code, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("cli-images")
    write_images(folder, 2)
    argv = [
        *train_argv(stack, folder, "cli-dog"),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--token-learning-rate",
        "1e-3",
        "--augment",
        "false",
        "--watch",
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cdserve(argv)
    return code, out.getvalue(), err.getvalue()


def test_unknown_jobs_are_not_found_for_cancel_and_watch(stack):
    with client(stack, "tok-acme") as acme:
        with pytest.raises(NotFound) as cancel_error:
            acme.cancel("no-such-job")
        with pytest.raises(NotFound) as watch_error:
            list(acme.watch("no-such-job", timeout_s=30))
        with pytest.raises(InvalidArgument) as page_error:
            acme.list(page_token="not-a-token")
    assert cancel_error.value.field == watch_error.value.field == "job_id"
    assert page_error.value.field == "page_token"


def test_a_killed_worker_resumes_from_its_checkpoint_and_watch_shows_the_restart(cancelled_while_training):
    seen = cancelled_while_training
    before, resumed = seen["before_kill"], seen["resumed"]
    assert (before.attempt, before.resumed_from_step) == (1, 0)
    assert resumed.attempt == 2 and resumed.resumed_from_step > 0
    assert resumed.resumed_from_step % CHECKPOINT_EVERY == 0  # a checkpoint's step: training went back to it
    running = [m for m in seen["watch_throughout"] if m.state == training_pb2.RUNNING and m.attempt]
    attempts = [m.attempt for m in running]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2}, attempts  # the restart is in the stream
    first_of_second = next(m for m in running if m.attempt == 2)
    assert first_of_second.resumed_from_step == resumed.resumed_from_step
    assert all(m.step >= first_of_second.resumed_from_step for m in running if m.attempt == 2)
    assert seen["watch_throughout"][-1].state == training_pb2.CANCELLED


def test_cancelling_a_running_job_stops_it_and_publishes_nothing(stack, cancelled_while_training):
    seen = cancelled_while_training
    job_id = seen["job"].job_id
    # another tenant cannot see the job, let alone cancel it; it kept running
    assert seen["beta_cancel"].value.field == "job_id" and seen["after_beta"].state == training_pb2.RUNNING
    reply = seen["cancel_reply"]
    assert reply.state == training_pb2.CANCELLED and reply.message == "cancelled on request"
    assert seen["ray_status"] == "STOPPED"  # the Ray job's driver ended, and with it the training:
    assert any("Worker" in name for name in seen["actors_before"]) and seen["groups_before"], seen["actors_before"]
    # (the fixture waited for those actors to die and the placement group to be removed)
    assert seen["progress_at_stop"]["step"] < LONG_STEPS and "published" not in seen["progress_at_stop"]
    final = seen["get"]
    assert final.state == training_pb2.CANCELLED and not final.published and final.step < LONG_STEPS
    assert [update.state for update in seen["watch"]] == [training_pb2.CANCELLED]  # one message, then the end
    assert seen["cancel_again"].state == training_pb2.CANCELLED  # idempotent: safe to retry
    assert not list((Path(stack.root) / "training" / "jobs" / job_id / "output").glob("*.safetensors"))
    with RegistryClient(stack.registry_target, token="tok-acme") as registry, pytest.raises(NotFound):
        registry.get("long-dog")
    with client(stack, "tok-acme") as acme:
        assert job_id in [j.job_id for j in acme.list(state=training_pb2.CANCELLED).jobs]
        assert job_id not in [j.job_id for j in acme.list(state=training_pb2.RUNNING).jobs]


def test_cancelling_a_job_before_it_starts(stack, cancelled_before_start):
    seen = cancelled_before_start
    assert seen["cancel_reply"].state == training_pb2.CANCELLED
    assert seen["ray_status"] == "STOPPED"
    assert seen["get"].state == training_pb2.CANCELLED and not seen["get"].published


def test_cli_train_watch_ends_published(stack, cli_job):
    code, out, err = cli_job
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("job ") and lines[0].endswith(" PENDING")
    assert lines[-1].startswith("SUCCEEDED") and lines[-1].endswith("published cli-dog@1"), out
    assert any(line.startswith("RUNNING") for line in lines)
    with RegistryClient(stack.registry_target, token="tok-acme") as registry:
        assert registry.get("cli-dog@1").tenant == "acme"
        recipe = artifact.from_bytes(registry.fetch("cli-dog@1")).header.recipe
    assert recipe["augment"] is False and recipe["resolved"]["effective_token_learning_rate"] == pytest.approx(
        2e-3
    )  # × batch 2


def test_cancelling_a_finished_job_is_a_conflict(stack, cli_job):
    job_id = cli_job[1].split()[1]
    with client(stack, "tok-acme") as acme:
        with pytest.raises(Conflict) as error:  # FAILED_PRECONDITION on the wire
            acme.cancel(job_id)
        assert acme.get(job_id).state == training_pb2.SUCCEEDED  # unchanged
    assert error.value.field == "job_id" and "already SUCCEEDED" in error.value.message
    with client(stack, "tok-beta") as beta, pytest.raises(NotFound):
        beta.cancel(job_id)  # another tenant's finished job: not found, as any other of its jobs


def test_cli_bad_flag_values_exit_non_zero_naming_the_field(stack, tmp_path, capsys):
    write_images(tmp_path, 1)
    argv = train_argv(stack, tmp_path, "bad-dog")
    with client(stack, "tok-ops") as ops:
        jobs_before = len(ops.list().jobs)
    assert cdserve([*argv, "--steps", "0"]) == 1
    assert "error (INVALID_ARGUMENT): spec.recipe.steps:" in capsys.readouterr().err
    assert cdserve([*argv, "--steps", str(LONG_STEPS + 1)]) == 1
    assert "spec.recipe.steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cdserve([*argv, "--steps", "-1"])  # not even encodable: argparse rejects it
    assert exit_info.value.code == 2 and "--steps" in capsys.readouterr().err
    with client(stack, "tok-ops") as ops:
        assert len(ops.list().jobs) == jobs_before  # nothing was submitted


def test_list_pages_and_filters_by_state(stack, cancelled_while_training, cancelled_before_start, cli_job):
    cancelled = [cancelled_while_training["job"].job_id, cancelled_before_start["job"].job_id]
    succeeded = [cli_job[1].split()[1]]
    with client(stack, "tok-acme") as acme, client(stack, "tok-beta") as beta, client(stack, "tok-ops") as ops:
        everything = [j.job_id for j in acme.list().jobs]
        assert set(everything) == set(cancelled + succeeded)
        assert [j.created_ms for j in acme.list().jobs] == sorted(j.created_ms for j in acme.list().jobs)

        pages, token = [], ""
        while True:
            page = acme.list(page_size=2, page_token=token)
            pages.append([j.job_id for j in page.jobs])
            token = page.next_page_token
            if not token:
                break
        assert pages == [everything[:2], everything[2:]]  # no empty trailing page, no repeats

        assert sorted(j.job_id for j in acme.list(state=training_pb2.CANCELLED).jobs) == sorted(cancelled)
        first = acme.list(state=training_pb2.CANCELLED, page_size=1)
        second = acme.list(state=training_pb2.CANCELLED, page_size=1, page_token=first.next_page_token)
        assert [j.job_id for j in (*first.jobs, *second.jobs)] == [j for j in everything if j in cancelled]
        assert second.next_page_token == ""
        assert [j.job_id for j in acme.list(state=training_pb2.SUCCEEDED).jobs] == succeeded
        assert all(j.state == training_pb2.SUCCEEDED for j in acme.list(state=training_pb2.SUCCEEDED).jobs)
        assert list(acme.list(state=training_pb2.FAILED).jobs) == []

        assert list(beta.list().jobs) == []  # tenants see only their own jobs
        assert {j.job_id for j in ops.list().jobs} >= set(everything)  # the operator sees everyone's
        with pytest.raises(NotFound):
            list(beta.watch(cancelled[0], timeout_s=30))
