"""Every subcommand answers a typed error with one line on stderr and exit status 1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli.main import main as cdserve


def closed_port() -> int:
    """A port nothing listens on: bound to find it free, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [
        ["generate", "--prompt", "a dog", "--out", "{tmp}", "--target", "127.0.0.1:{port}"],
        ["concepts", "list", "--registry", "127.0.0.1:{port}"],
        [
            "train",
            "--images",
            "examples/twotone-star/targets",
            "--id",
            "star",
            "--category",
            "star",
            "--server",
            "127.0.0.1:{port}",
        ],
    ],
    ids=["generate", "concepts", "train"],
)
def test_a_service_not_running_is_one_line_naming_it_not_a_traceback(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    argv = [part.format(tmp=tmp_path, port=port) for part in command]
    assert cdserve(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error (UNAVAILABLE):") and f"127.0.0.1:{port}" in err, err
    assert err.endswith("(is the service running, and is the address right?)")
    assert "Traceback" not in capsys.readouterr().err
