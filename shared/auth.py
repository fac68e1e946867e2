"""Bearer tokens → tenants, and the caller of the RPC being handled.

Shared by every cdserve gRPC service (registry, training) so tokens mean the same everywhere.

Tokens come from a YAML/JSON file (`tokens: {<token>: <tenant>}`) or the same text in an
environment variable (read by the CLI, `CDSERVE_REGISTRY_TOKENS`). Only their sha256 is kept in memory and no token is ever
logged; a lookup by digest also avoids comparing secrets byte by byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import Field, ValidationError

from shared.config import StrictModel, load_yaml
from shared.errors import InvalidArgument, Unauthenticated

BEARER = "bearer "
OPERATOR_TENANT = "*"
"""A token mapped to this tenant sees and may delete everything (replicas, operators)."""


class Owned(Protocol):
    """Anything a tenant owns that may be public."""

    tenant: str
    public: bool


@dataclass(frozen=True)
class Caller:
    """Who is calling: a tenant from a bearer token, or None for an anonymous reader."""

    tenant: str | None = None

    @property
    def sees_all(self) -> bool:
        return self.tenant == OPERATOR_TENANT

    def may_see(self, record: Owned) -> bool:
        return record.public or self.sees_all or record.tenant == self.tenant

    def require_tenant(self) -> str:
        if self.tenant is None:
            raise Unauthenticated("this call writes; send 'authorization: Bearer <token>'", field="authorization")
        return self.tenant



_caller: ContextVar[Caller] = ContextVar("cdserve_caller", default=Caller())


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


class Authenticator:
    """Turns the `authorization` metadata of a call into a `Caller`."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        for token, tenant in tokens.items():
            if not token or not tenant:
                raise InvalidArgument("tokens and tenants must be non-empty strings", field="tokens")
        self._tenants = {_digest(token): tenant for token, tenant in tokens.items()}

    def caller(self, authorization: str | None) -> Caller:
        """No header: an anonymous reader. A header: it must be 'Bearer <known token>'."""
        if authorization is None:
            return Caller()
        if not authorization.lower().startswith(BEARER):
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'", field="authorization")
        tenant = self._tenants.get(_digest(authorization[len(BEARER) :].strip()))
        if tenant is None:
            raise Unauthenticated("the bearer token is not known to this service", field="authorization")
        return Caller(tenant)


def current_caller() -> Caller:
    """The caller of the RPC being handled (set by `interceptors.AuthInterceptor`)."""
    return _caller.get()


def set_caller(caller: Caller) -> object:
    return _caller.set(caller)


def reset_caller(token: object) -> None:
    _caller.reset(token)  # type: ignore[arg-type]
