"""A running server picks up good policy and registry changes without a restart, delivered
the way a kubelet updates a ConfigMap volume (an atomic ``..data`` symlink swap)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import load_review
from tests.served import Server, running

pytestmark = pytest.mark.slow

EXAMPLE_REGISTRY = (Path(__file__).parent.parent / "examples" / "registry.yaml").read_text()
SERVICE_ENTRY = orjson.dumps(load_review("serviceentry-v1.json"))
POD = orjson.dumps(load_review("pod-create.json"))


class ConfigMapVolume:
    """A directory laid out like a kubelet-projected ConfigMap: key -> ..data/key."""

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key, self.version = root, key, 0
        root.mkdir()

    def publish(self, text: str) -> Path:
        self.version += 1
        version_dir = self.root / f"..2026_11_22_00_00_0{self.version}.000000000"
        version_dir.mkdir()
        (version_dir / self.key).write_text(text)
        staging = self.root / "..data_tmp"
        staging.symlink_to(version_dir.name)
        os.replace(staging, self.root / "..data")  # the atomic swap
        link = self.root / self.key
        if not link.is_symlink():
            link.symlink_to(f"..data/{self.key}")
        return link


def answer(server: Server, path: str, body: bytes) -> dict[str, Any]:
    response = server.pool().request("POST", path, body=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status == 200
    result: dict[str, Any] = orjson.loads(response.data)["response"]
    return result


def eventually(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the change was not picked up in time"
        time.sleep(0.05)


def test_a_registry_change_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "registry", "registry.yaml")
    path = volume.publish("entries: []\n")
    with running(tmp_path, "--registry", str(path), "--reload-interval", "0.1") as server:
        refused = answer(server, "/validate", SERVICE_ENTRY)
        assert refused["allowed"] is False
        assert "serviceentry.host-not-approved" in refused["status"]["message"]
        volume.publish(EXAMPLE_REGISTRY)
        eventually(lambda: answer(server, "/validate", SERVICE_ENTRY)["allowed"] is True)
        assert server.process.poll() is None  # same process: no restart happened


def test_a_policy_change_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "policy", "policy.yaml")
    path = volume.publish("{}\n")
    with running(tmp_path, "--policy", str(path), "--reload-interval", "0.1") as server:

        def patched_paths() -> set[str]:
            response = answer(server, "/mutate", POD)
            return {op["path"] for op in orjson.loads(base64.b64decode(response["patch"]))}

        assert "/spec/dnsConfig" in patched_paths()
        volume.publish("rules:\n  pod.dns: 'off'\n")
        eventually(lambda: "/spec/dnsConfig" not in patched_paths())
        assert "/spec/runtimeClassName" in patched_paths()
