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
