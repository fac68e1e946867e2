"""The local stack's secrets, kept in its data folder so that they survive restarts: the operator
token (what replicas read the registry with, and what `cdserve up` prints when given no tokens
file), the key that signs training jobs' publish tokens, and the tokens file every service reads.

Each file is created once, readable by its owner only (0600, in a 0700 folder), and never logged.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from shared.auth import OPERATOR_TENANT, load_tokens

OPERATOR_TOKEN_FILE = "operator.token"
JOB_TOKEN_KEY_FILE = "job-token.key"
TOKENS_FILE = "tokens.yaml"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (replacing it) with mode 0600 from the start: never readable by others."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)
    partial.replace(path)


def persistent_secret(path: Path) -> str:
    """The secret in `path`, made (random, 0600) on first use."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


@dataclass(frozen=True)
class StackCredentials:
    operator_token: str
    operator_token_file: Path
    job_token_key_file: Path
    tokens_file: Path
    """The tenants' tokens (from --tokens, else none) plus the operator token: what every service reads."""
    user_tokens_file: Path | None

    @classmethod
    def load(cls, folder: Path, user_tokens_file: Path | None) -> StackCredentials:
        """Make or reuse the secrets in `folder`; the tokens file is rewritten from `user_tokens_file`
        at each start, so that edits to it take effect on restart."""
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        operator_file, key_file = folder / OPERATOR_TOKEN_FILE, folder / JOB_TOKEN_KEY_FILE
        operator = persistent_secret(operator_file)
        persistent_secret(key_file)
        tokens = {**(load_tokens(user_tokens_file) if user_tokens_file else {}), operator: OPERATOR_TENANT}
        tokens_file = folder / TOKENS_FILE
        write_private(tokens_file, yaml.safe_dump({"tokens": tokens}))
        return cls(operator, operator_file, key_file, tokens_file, user_tokens_file)
