"""The `authorization` value of a Generate call → its caller, as every ingress reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serving.auth import GenerateAuthenticator
from serving.config import AuthConfig, ServingConfig
from shared.auth import Caller
from shared.errors import Unauthenticated


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": {"tok-acme": "acme", "tok-ops": "*"}}))
    return path


def test_a_known_bearer_token_is_its_tenant(tokens_file: Path) -> None:
    auth = GenerateAuthenticator(AuthConfig(tokens_file=tokens_file))
    assert auth.caller("Bearer tok-acme") == Caller("acme")
    assert auth.caller("bearer tok-ops").sees_all
    metadata = [("application", "cdserve"), ("authorization", "Bearer tok-acme")]
    assert auth.caller_from_metadata(metadata) == Caller("acme")


@pytest.mark.parametrize("value", ["Bearer tok-made-up", "Bearer ", "tok-acme", "Basic dG9rLWFjbWU="])
def test_an_unknown_or_malformed_token_is_unauthenticated_without_echoing_it(tokens_file: Path, value: str) -> None:
    auth = GenerateAuthenticator(AuthConfig(tokens_file=tokens_file))
    with pytest.raises(Unauthenticated) as caught:
        auth.caller(value)
    assert caught.value.field == "authorization" and "tok-" not in caught.value.message


def test_anonymous_callers_are_allowed_by_default_and_refused_when_configured(tokens_file: Path) -> None:
    assert ServingConfig().auth.allow_anonymous
    assert GenerateAuthenticator(AuthConfig(tokens_file=tokens_file)).caller(None) == Caller()
    closed = GenerateAuthenticator(AuthConfig(tokens_file=tokens_file, allow_anonymous=False))
    for missing in (None, ""):
        with pytest.raises(Unauthenticated, match="Bearer <token>"):
            closed.caller(missing)
    with pytest.raises(Unauthenticated):
        closed.caller_from_metadata([("application", "cdserve")])
    assert closed.caller("Bearer tok-acme") == Caller("acme")


def test_two_tokens_in_one_call_are_refused(tokens_file: Path) -> None:
    auth = GenerateAuthenticator(AuthConfig(tokens_file=tokens_file))
    with pytest.raises(Unauthenticated, match="one 'authorization'"):
        auth.caller_from_metadata([("authorization", "Bearer tok-acme"), ("authorization", "Bearer tok-ops")])


def test_the_auth_section_rejects_unknown_keys(tokens_file: Path) -> None:
    with pytest.raises(ValidationError):
        ServingConfig.model_validate({"auth": {"tokens_file": str(tokens_file), "allow_anonymus": False}})
