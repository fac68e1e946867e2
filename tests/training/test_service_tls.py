"""The training service over TLS (a certificate made at test time): a client trusting it is served,
a plaintext client is not, and the `cdserve train` command line reaches it with `--tls-ca`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cli.main import main as cdserve
from shared.errors import Unavailable
from training.client import TrainingClient
from training.service.config import TrainingServiceConfig
from training.service.server import start_training_service

from .conftest import LoopThread, write_images

TOKENS = {"tok-acme": "acme"}


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory, tls_certificate):
    cert, key = tls_certificate
    root = tmp_path_factory.mktemp("tls-training")
    config = TrainingServiceConfig(
        data_dir=root,
        base_model=str(root / "no-model"),
        metrics_port=None,
        tls_cert_file=cert,
        tls_key_file=key,
        shutdown_grace_s=0,
    )
    loop = LoopThread()
    service = loop.run(start_training_service(config, tokens=TOKENS))
    yield f"127.0.0.1:{service.port}"
    loop.run(service.stop(0))
    loop.close()


def test_a_client_trusting_the_certificate_is_served_and_a_plaintext_one_is_not(tls_service, tls_certificate):
    cert, _ = tls_certificate
    with TrainingClient(tls_service, token="tok-acme", tls_ca_file=cert) as client:
        assert list(client.list().jobs) == []
    with TrainingClient(tls_service, token="tok-acme", timeout_s=2) as plaintext, pytest.raises(Unavailable):
        plaintext.list()


def test_cdserve_train_reaches_the_service_with_tls_ca(tls_service, tls_certificate, tmp_path, capsys):
    cert, _ = tls_certificate
    write_images(tmp_path / "images", 1)
    command = [
        "train",
        "--images",
        str(tmp_path / "images"),
        "--category",
        "dog",
        "--id",
        "my-dog",
        "--server",
        tls_service,
        "--token",
        "tok-acme",
        "--steps",
        "0",
    ]
    # the service answers (with its own validation error), so the TLS connection was made
    assert cdserve([*command, "--tls-ca", str(cert)]) == 1
    assert "recipe.steps" in capsys.readouterr().err


def test_a_certificate_without_its_key_is_refused(tmp_path, tls_certificate):
    with pytest.raises(ValidationError, match="together"):
        TrainingServiceConfig(data_dir=tmp_path, base_model="m", tls_cert_file=tls_certificate[0])


def test_a_training_job_publishes_to_a_tls_registry_trusting_its_ca_file(tmp_path, tls_certificate, tiny_base):
    from serving.registry.config import RegistryConfig
    from shared.artifact import to_bytes
    from tests.registry.conftest import TOKENS, ServerThread
    from tests.support.synthetic import random_concept
    from training.job import JobSpec, publish

    cert, key = tls_certificate
    config = RegistryConfig(data_dir=tmp_path / "registry", metrics_port=None, tls_cert_file=cert, tls_key_file=key)
    registry = ServerThread(config, [tiny_base.spec], TOKENS)
    artifact = tmp_path / "dog.safetensors"
    artifact.write_bytes(to_bytes(*random_concept(tiny_base.spec, "dog")))
    train = {
        "base_model": "unused",
        "output_dir": str(tmp_path / "out"),
        "concepts": [{"concept_id": "dog", "category": "dog", "images": [str(artifact)]}],
    }
    spec = JobSpec.model_validate(
        {
            "train": train,
            "options": {"job_dir": str(tmp_path)},
            "registry": registry.target,
            "registry_tls_ca_file": str(cert),
        }
    )
    try:
        assert publish(spec, artifact, "tok-acme") == "dog@1"
    finally:
        registry.close()
