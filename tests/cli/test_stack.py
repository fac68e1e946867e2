"""`ray.init`'s one retry in the local stack, and the HTTP proxy's interface. The dashboard race the
retry answers is internal to Ray and cannot be provoked here, so `ray.init` is replaced by a recorder
that fails as Ray 2.60 did."""

from __future__ import annotations

import pytest
import ray

from cli.stack import _init_ray
from serving.app import http_options
from serving.config import ServingConfig


class FlakyInit:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures, self.calls = failures, []

    def __call__(self, **options: object) -> None:
        self.calls.append(options)
        if self.failures:
            raise self.failures.pop(0)


def test_a_dashboard_start_failure_is_retried_once_with_the_same_options(monkeypatch) -> None:
    init = FlakyInit([Exception("Failed to read dashboard.err file: [Errno 2] No such file")])
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    _init_ray(num_cpus=2, include_dashboard=True)
    assert init.calls == [{"num_cpus": 2, "include_dashboard": True}] * 2


def test_a_second_dashboard_failure_and_other_errors_propagate(monkeypatch) -> None:
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    twice = FlakyInit([Exception("dashboard died"), Exception("dashboard died again")])
    monkeypatch.setattr(ray, "init", twice)
    with pytest.raises(Exception, match="dashboard died again"):
        _init_ray(num_cpus=2)
    other = FlakyInit([ValueError("num_cpus must be positive")])
    monkeypatch.setattr(ray, "init", other)
    with pytest.raises(ValueError, match="num_cpus"):
        _init_ray(num_cpus=-1)
    assert len(other.calls) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_http_proxy_binds_the_stacks_host_on_the_configured_port(host: str) -> None:
    options = http_options(ServingConfig(http_port=8123), host)
    assert (options.host, options.port) == (host, 8123)
