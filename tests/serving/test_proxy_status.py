"""The status Serve's gRPC proxy gives a failed Generator call, once `serving.proxy_status` wrapped
its functions: our errors by our table with their detail, a dead replica UNAVAILABLE, the rest as
Serve answers. This also fails first when a Ray upgrade moves the functions the wrapper replaces
(`test_generate_auth` and the replica-kill test check the same through a live proxy)."""

from __future__ import annotations

import grpc
import pytest
from ray.exceptions import ActorDiedError
from ray.serve._private import proxy
from ray.serve.exceptions import gRPCStatusError

from proto import common_pb2
from serving import proxy_status
from shared.errors import NotFound
from shared.grpc_status import ERROR_DETAIL_KEY


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    proxy_status.install()
    proxy_status.install()  # a second proxy start in the same process changes nothing


def detail_of(status: proxy_status.DetailedStatus) -> common_pb2.ErrorDetail:
    (value,) = [value for key, value in status.trailing_metadata if key == ERROR_DETAIL_KEY]
    assert isinstance(value, bytes)
    return common_pb2.ErrorDetail.FromString(value)


def test_our_error_gets_its_status_and_detail() -> None:
    error = gRPCStatusError(NotFound("concept 'x' does not exist", field="ref"), grpc.StatusCode.NOT_FOUND, "ignored")
    status = proxy.get_grpc_response_status(error, None, "req-1")
    assert isinstance(status, proxy_status.DetailedStatus)
    assert (status.code, status.is_error) == (grpc.StatusCode.NOT_FOUND, True)
    assert status.message == "concept 'x' does not exist"
    assert detail_of(status) == common_pb2.ErrorDetail(reason="NOT_FOUND", field="ref", message=status.message)
    assert ("request_id", "req-1") in status.trailing_metadata


def test_a_dead_replica_is_unavailable_with_a_clean_message() -> None:
    status = proxy.get_grpc_response_status(ActorDiedError(), None, "req-2")
    assert isinstance(status, proxy_status.DetailedStatus)
    assert status.code == grpc.StatusCode.UNAVAILABLE and status.message == proxy_status.REPLICA_STOPPED
    assert detail_of(status).reason == "UNAVAILABLE" and "actor" not in status.message.lower()


def test_serves_own_failures_keep_serves_answer() -> None:
    status = proxy.get_grpc_response_status(TimeoutError(), 5.0, "req-3")
    assert not isinstance(status, proxy_status.DetailedStatus)
    assert status.code == grpc.StatusCode.DEADLINE_EXCEEDED
