"""`python -m cli.child PARENT_PID cdserve-args…`: a `cdserve` command run as a supervised child
that ends with its supervisor.

An orderly stop of the supervisor stops its children itself; this covers the disorderly one (the
supervisor killed with SIGKILL, or crashing), after which a child would otherwise keep its port and
its data folder. On Linux the kernel sends the child SIGTERM when its parent dies
(PR_SET_PDEATHSIG), which the services answer with their graceful stop.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        sys.exit(f"cdserve child: supervisor {parent_pid} is gone")


def main() -> int:
    parent_pid, argv = int(sys.argv[1]), sys.argv[2:]
    die_with_parent(parent_pid)
    from cli.main import main as cdserve

    return cdserve(argv)


if __name__ == "__main__":
    sys.exit(main())
