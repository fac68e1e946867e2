"""Who is calling Generate: the `authorization` value of a request → a `shared.auth.Caller`.

One object per replica (or per HTTP ingress) built from `ServingConfig.auth`; the gRPC methods and
the HTTP face both call `caller(authorization)`, so a token means the same at every door. Tokens
are hashed by `shared.auth.Authenticator`; none is ever logged or echoed.
"""

from __future__ import annotations

from collections.abc import Iterable

from serving.config import AuthConfig
from shared.auth import Authenticator, Caller, load_tokens
from shared.errors import Unauthenticated

AUTHORIZATION = "authorization"


class GenerateAuthenticator:
    def __init__(self, config: AuthConfig) -> None:
        tokens = load_tokens(config.tokens_file) if config.tokens_file is not None else {}
        self._tokens = Authenticator(tokens)
        self.allow_anonymous = config.allow_anonymous

    def caller(self, authorization: str | None) -> Caller:
        """No value (or an empty one): anonymous, if allowed. Otherwise it must be 'Bearer <known
        token>'; anything else is Unauthenticated without saying which part was wrong."""
        if not authorization:
            if not self.allow_anonymous:
                raise Unauthenticated("this service needs 'authorization: Bearer <token>'", field=AUTHORIZATION)
            return Caller()
        return self._tokens.caller(authorization)

    def caller_from_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> Caller:
        """The caller of a gRPC call from its invocation metadata; sending two tokens is an error
        (which one counts would depend on the proxy)."""
        values = [value for key, value in metadata if key.lower() == AUTHORIZATION]
        if len(values) > 1:
            raise Unauthenticated("send one 'authorization' metadata entry, not several", field=AUTHORIZATION)
        value = values[0] if values else None
        if isinstance(value, bytes):
            raise Unauthenticated("the authorization metadata must be text: 'Bearer <token>'", field=AUTHORIZATION)
        return self.caller(value)
