"""Fuzzing plumbing: how many examples, how a call's outcome is read, and what a server must still
do after any request (answer its health check, never INTERNAL or UNKNOWN).

`CDSERVE_FUZZ_EXAMPLES=2000` raises every RPC's example count for a long local run (the default
keeps the whole folder within the suite's time budget); `CDSERVE_FUZZ_LOG=FILE` appends each call's
RPC and status to FILE as it happens."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

Code: TypeAlias = grpc.StatusCode
NEVER = (Code.INTERNAL, Code.UNKNOWN)
"""A server's own failure, whatever the input: the fuzz tests' one forbidden answer."""
CALL_TIMEOUT_S = 30.0
"""A unary call that takes longer than this hangs: reported as a failure (DEADLINE_EXCEEDED)."""
WATCH_S = 0.5
"""How long a Watch stream is read: it streams until cancelled, so its deadline ends it."""
SEEN: Counter[tuple[str, str]] = Counter()
"""(RPC, status) of every fuzzed call, shown at the end of the run: what the examples reached."""
TOKENS = st.sampled_from(["tok-acme", "tok-beta", "tok-ops", None, "tok-made-up", ""])


def fuzz_settings(default_examples: int) -> settings:
    examples = int(os.environ.get("CDSERVE_FUZZ_EXAMPLES", default_examples))
    return settings(
        max_examples=examples,
        deadline=None,  # one example is a few network calls on a shared machine: its time says little
        database=None,  # nothing written into the checkout; a failure prints its reproducing example
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
        print_blob=True,
    )


@dataclass(frozen=True)
class Outcome:
    code: Code
    details: str = ""

    def check(self, rpc: str, *, may_time_out: bool = False) -> None:
        """Never the server's own failure; a deadline only where the call streams until cancelled."""
        SEEN[rpc, self.code.name] += 1
        if log := os.environ.get("CDSERVE_FUZZ_LOG"):  # a long run's progress, readable while it runs
            with open(log, "a") as out:
                out.write(f"{rpc} {self.code.name}\n")
        assert self.code not in NEVER, f"{self.code.name}: {self.details[:500]}"
        if not may_time_out:
            assert self.code != Code.DEADLINE_EXCEEDED, f"no answer within {CALL_TIMEOUT_S} s"


def metadata(token: str | None, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (*extra, *((("authorization", f"Bearer {token}"),) if token is not None else ()))


def outcome(invoke: Callable[[], Any], *, most_messages: int = 3) -> Outcome:
    """Call, drain a stream (up to `most_messages`, then cancel it), and read the status."""
    try:
        result = invoke()
        if isinstance(result, Iterable) and hasattr(result, "cancel"):
            for count, _ in enumerate(result, start=1):
                if count >= most_messages:
                    result.cancel()
                    break
    except grpc.RpcError as e:
        if e.code() == Code.CANCELLED and "Locally cancelled" in (e.details() or ""):
            return Outcome(Code.OK)
        return Outcome(e.code(), e.details() or "")
    return Outcome(Code.OK)


def serving(channel: grpc.Channel) -> bool:
    """The server's health check answers SERVING."""
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SEEN:
        terminalreporter.section("fuzzed calls by status")
        for (rpc, code), count in sorted(SEEN.items()):
            terminalreporter.write_line(f"{rpc:<28} {code:<20} {count}")
