"""Bearer tokens → tenants, and the caller of the RPC being handled.

Shared by every cdserve gRPC service (registry, training) so tokens mean the same everywhere.

Tokens come from a YAML/JSON file (`tokens: {<token>: <tenant>}`) or the same text in an
environment variable (read by the CLI, `CDSERVE_REGISTRY_TOKENS`). Only their sha256 is kept in
memory and no token is ever logged; a lookup by digest also avoids comparing secrets byte by byte.

A training job publishes with a *job token* instead of its submitter's token: minted by the
training service for one job (`mint_job_token`), signed with a key the registry shares, it names the
tenant, the concept ids the job may publish and an expiry. It can leak (Ray shows a job's
environment and files to whoever reaches its dashboard) without giving away more than that one
publish; a user's own token would give away the tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import Field, ValidationError

from shared.config import StrictModel, load_yaml
from shared.errors import InvalidArgument, PermissionDenied, Unauthenticated

BEARER = "bearer "
OPERATOR_TENANT = "*"
"""A token mapped to this tenant sees and may delete everything (replicas, operators)."""
JOB_TOKEN_PREFIX = "cdjob."
MIN_JOB_KEY_BYTES = 32


class Owned(Protocol):
    """Anything a tenant owns that may be public."""

    @property
    def tenant(self) -> str: ...

    @property
    def public(self) -> bool: ...


@dataclass(frozen=True)
class Caller:
    """Who is calling: a tenant from a bearer token, or None for an anonymous reader.

    `publish_only` is set for a job token: the caller may publish these concept ids of its tenant
    (and read as the tenant), nothing else."""

    tenant: str | None = None
    publish_only: frozenset[str] | None = None

    @property
    def sees_all(self) -> bool:
        return self.tenant == OPERATOR_TENANT and self.publish_only is None

    def may_see(self, record: Owned) -> bool:
        return record.public or self.sees_all or record.tenant == self.tenant

    def require_tenant(self, reason: str) -> str:
        """The tenant of a caller that may write; `reason` says why the call needs a token, e.g.
        "cancelling a training job changes it". A job token may not: it only publishes."""
        tenant = self._authenticated(reason)
        if self.publish_only is not None:
            raise PermissionDenied("a training job's token may only publish its own concepts", field="authorization")
        return tenant

    def require_publisher(self, concept_id: str | None) -> str:
        """The tenant that publishes `concept_id` (None: not known yet, checked again once it is)."""
        tenant = self._authenticated("publishing adds a concept to a tenant")
        if self.publish_only is not None and concept_id is not None and concept_id not in self.publish_only:
            raise PermissionDenied(
                f"this training job's token may publish only {sorted(self.publish_only)}, not {concept_id!r}",
                field="concept_id",
            )
        return tenant

    def _authenticated(self, reason: str) -> str:
        if self.tenant is None:
            raise Unauthenticated(f"{reason}: send 'authorization: Bearer <token>'", field="authorization")
        return self.tenant


_caller: ContextVar[Caller] = ContextVar("cdserve_caller", default=Caller())  # noqa: B039 (Caller is frozen)


class TokensFile(StrictModel):
    tokens: dict[str, str] = Field(description="bearer token → tenant ('*' is the operator: sees all)")


def load_tokens(path: str | Path) -> dict[str, str]:
    return load_yaml(TokensFile, path).tokens


def parse_tokens(text: str, *, source: str) -> dict[str, str]:
    """Tokens from YAML/JSON text, e.g. the value of an environment variable named `source`."""
    try:
        return TokensFile.model_validate(yaml.safe_load(text) or {}).tokens
    except (ValidationError, yaml.YAMLError) as e:
        raise InvalidArgument(f"{source}: expected 'tokens: {{<token>: <tenant>}}'", field=source) from e


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, (JOB_TOKEN_PREFIX + payload).encode(), hashlib.sha256).digest())


def check_job_key(key: bytes) -> bytes:
    if len(key) < MIN_JOB_KEY_BYTES:
        raise InvalidArgument(f"the job-token key must hold at least {MIN_JOB_KEY_BYTES} bytes", field="job_token_key")
    return key


def load_job_token_key(path: str | Path) -> bytes:
    """The key in a file (its text, surrounding whitespace removed), as shared by registry and
    training service."""
    try:
        return check_job_key(Path(path).read_text().strip().encode())
    except OSError as e:
        message = f"job-token key file {str(path)!r} is unreadable ({e})"
        raise InvalidArgument(message, field="job_token_key_file") from e


def mint_job_token(key: bytes, *, tenant: str, concept_ids: Iterable[str], ttl_s: float) -> str:
    """'cdjob.<payload>.<signature>': publishes `concept_ids` as `tenant` for `ttl_s` seconds."""
    claims = {"tenant": tenant, "concepts": sorted(concept_ids), "expires": int(time.time() + ttl_s)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{JOB_TOKEN_PREFIX}{payload}.{_signature(check_job_key(key), payload)}"


class Authenticator:
    """Turns the `authorization` metadata of a call into a `Caller`. With `job_token_key`, job
    tokens signed with it are accepted too (see the module docstring)."""

    def __init__(self, tokens: Mapping[str, str], *, job_token_key: bytes | None = None) -> None:
        for token, tenant in tokens.items():
            if not token or not tenant:
                raise InvalidArgument("tokens and tenants must be non-empty strings", field="tokens")
        self._tenants = {_digest(token): tenant for token, tenant in tokens.items()}
        self._job_key = check_job_key(job_token_key) if job_token_key is not None else None

    def caller(self, authorization: str | None) -> Caller:
        """No header: an anonymous reader. A header: it must be 'Bearer <known token>'."""
        if authorization is None:
            return Caller()
        if not authorization.lower().startswith(BEARER):
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'", field="authorization")
        token = authorization[len(BEARER) :].strip()
        if self._job_key is not None and token.startswith(JOB_TOKEN_PREFIX):
            return self._job_caller(token.removeprefix(JOB_TOKEN_PREFIX))
        tenant = self._tenants.get(_digest(token))
        if tenant is None:
            raise Unauthenticated("the bearer token is not known to this service", field="authorization")
        return Caller(tenant)

    def _job_caller(self, token: str) -> Caller:
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), _signature(self._job_key, payload).encode()):  # type: ignore[arg-type]
            raise Unauthenticated("the bearer token is not known to this service", field="authorization")
        claims = json.loads(_unb64(payload))  # signed by us: well-formed
        if claims["expires"] < time.time():
            raise Unauthenticated("the training job's token has expired; submit the job again", field="authorization")
        return Caller(claims["tenant"], publish_only=frozenset(claims["concepts"]))


def current_caller() -> Caller:
    """The caller of the RPC being handled (set by `interceptors.AuthInterceptor`)."""
    return _caller.get()


def set_caller(caller: Caller) -> object:
    return _caller.set(caller)


def reset_caller(token: object) -> None:
    _caller.reset(token)  # type: ignore[arg-type]
