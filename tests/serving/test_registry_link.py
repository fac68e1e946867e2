"""The replicas' registry token comes inline or from a mounted file, never both."""

import pytest
from pydantic import ValidationError

from serving.config import RegistryLink


def test_token_from_a_mounted_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    assert RegistryLink(token_file=secret).bearer_token() == "s3cret"
    assert RegistryLink(token="inline").bearer_token() == "inline"
    assert RegistryLink().bearer_token() is None


def test_both_sources_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="not both"):
        RegistryLink(token="a", token_file=tmp_path / "t")


def test_replicas_reach_a_tls_registry_trusting_the_links_ca_file(tmp_path, tls_certificate):
    from serving.registry.config import RegistryConfig
    from serving.replica import connect_registry
    from shared.errors import Unavailable
    from tests.registry.conftest import TOKENS, ServerThread

    cert, key = tls_certificate
    config = RegistryConfig(data_dir=tmp_path, metrics_port=None, tls_cert_file=cert, tls_key_file=key)
    registry = ServerThread(config, [], TOKENS)
    try:
        with connect_registry(RegistryLink(address=registry.target, token="tok-ops", tls_ca_file=cert)) as client:
            assert list(client.list()) == []
        link = RegistryLink(address=registry.target, token="tok-ops", timeout_s=2)
        with connect_registry(link) as plaintext, pytest.raises(Unavailable):
            list(plaintext.list())
    finally:
        registry.close()
