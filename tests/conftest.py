"""Suite-wide fixtures: tiny seeded models and a TLS certificate are made once per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_base():
    """The tiny SD pipeline from configs, prepared as a base model (fp32, CPU)."""
    from shared.basemodel import prepare_base_model
    from shared.tiny import build_tiny_pipeline

    return prepare_base_model(build_tiny_pipeline(seed=0), source="tiny")


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """(certificate, private key) PEM files, self-signed for 127.0.0.1 and localhost: the server's
    certificate and, for clients, the CA bundle to trust."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    subprocess.run([*request, *names, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
