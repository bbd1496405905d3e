"""Shared test helpers: fixture loading and free loopback ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

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
