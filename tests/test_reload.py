"""Background reloading with real files, including the kubelet's ``..data`` symlink flip."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from aiohttp import web

from webhook.config.watch import WatchedFile
from webhook.egress.registry import Registry, load_registry
from webhook.server.background import reload_ctx

ONE = "entries: [{host: api.frankfurter.app, namespaces: [agents]}]\n"
TWO = "entries: [{host: api.frankfurter.app}, {host: api.exchangerate.host}]\n"
BROKEN = "entries: [{host: 169.254.169.254}]\n"


def _hosts(registry: Registry | None) -> list[str]:
    assert registry is not None
    return [str(entry.host) for entry in registry.entries]


class KubeletVolume:
    """A ConfigMap volume laid out and updated the way the kubelet does it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.serial = 0
        self.path = root / "registry.yaml"

    def publish(self, text: str) -> None:
        self.serial += 1
        directory = self.root / f"..2026_11_22_05_00_{self.serial:02d}.000000001"
        directory.mkdir()
        (directory / "registry.yaml").write_text(text)
        staging = self.root / "..data_tmp"
        staging.symlink_to(directory.name)
        os.replace(staging, self.root / "..data")  # the atomic swap
        if not self.path.is_symlink():
            self.path.symlink_to("..data/registry.yaml")


def test_a_watched_file_is_none_until_the_first_good_load(tmp_path: Path) -> None:
    watched = WatchedFile(tmp_path / "registry.yaml", load_registry, name="egress registry")
    assert watched.current is None
    assert watched.generation == 0
    assert not watched.poll()
    assert watched.current is None
    assert watched.problem is not None
    assert "registry.yaml: cannot read the egress registry" in watched.problem
    assert watched.last_success is None


def test_a_kubelet_symlink_flip_is_picked_up(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path)
    volume.publish(ONE)
    watched = WatchedFile(volume.path, load_registry, name="egress registry")
    assert watched.poll()
    assert _hosts(watched.current) == ["api.frankfurter.app"]
    assert watched.generation == 1
    assert watched.problem is None
    assert watched.last_success is not None
    assert not watched.poll()  # unchanged: nothing reloaded
    volume.publish(TWO)
    assert watched.poll()
    assert _hosts(watched.current) == ["api.frankfurter.app", "api.exchangerate.host"]
    assert watched.generation == 2


def test_a_flip_to_identical_size_and_timestamp_is_still_seen(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path)
    volume.publish("entries: [{host: a.example.com}]\n")
    watched = WatchedFile(volume.path, load_registry, name="egress registry")
    watched.poll()
    old = (volume.root / "..data" / "registry.yaml").stat()
    volume.publish("entries: [{host: b.example.com}]\n")  # same size
    os.utime(volume.root / "..data" / "registry.yaml", ns=(old.st_atime_ns, old.st_mtime_ns))
    assert watched.poll()
    assert _hosts(watched.current) == ["b.example.com"]


def test_a_corrupt_update_keeps_the_last_good_version(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    volume = KubeletVolume(tmp_path)
    volume.publish(ONE)
    watched = WatchedFile(volume.path, load_registry, name="egress registry")
    watched.poll()
    good = watched.current
    volume.publish(BROKEN)
    with caplog.at_level(logging.WARNING, logger="webhook.config.watch"):
        assert not watched.poll()
        assert not watched.poll()
    assert watched.current is good
    assert watched.generation == 1
    assert watched.problem is not None
    assert "entries.0.host" in watched.problem
    assert len([r for r in caplog.records if "entries.0.host" in r.getMessage()]) == 1
    volume.publish(TWO)
    assert watched.poll()
    assert watched.problem is None
    assert watched.generation == 2


def test_a_missing_file_keeps_the_last_good_version_and_its_return_reloads(
        tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(ONE)
    watched = WatchedFile(path, load_registry, name="egress registry")
    watched.poll()
    good = watched.current
    path.unlink()
    assert not watched.poll()
    assert watched.current is good
    assert watched.problem is not None
    assert "No such file" in watched.problem
    path.write_text(ONE)  # the same content comes back: still a reload
    assert watched.poll()
    assert watched.problem is None


def test_an_unexpected_parse_error_does_not_stop_the_watcher(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "x"
    path.write_text("x")

    def explode(_: Path) -> int:
        raise RuntimeError("boom")

    watched = WatchedFile(path, explode, name="thing")
    with caplog.at_level(logging.ERROR, logger="webhook.config.watch"):
        assert not watched.poll()
    assert watched.problem is not None
    assert "boom" in watched.problem
    assert any(r.exc_info for r in caplog.records)


async def test_watch_picks_up_a_change_and_stops_when_asked(tmp_path: Path) -> None:
    volume = KubeletVolume(tmp_path)
    volume.publish(ONE)
    watched = WatchedFile(volume.path, load_registry, name="egress registry")
    stop = asyncio.Event()
    task = asyncio.create_task(watched.watch(interval=0.01, stop=stop))
    for _ in range(500):
        if watched.generation == 1:
            break
        await asyncio.sleep(0.01)
    volume.publish(TWO)
    for _ in range(500):
        if watched.generation == 2:
            break
        await asyncio.sleep(0.01)
    assert watched.generation == 2
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_reload_ctx_loads_at_start_up_and_stops_with_the_app(tmp_path: Path) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(ONE)
    watched = WatchedFile(path, load_registry, name="egress registry")
    app = web.Application()
    app.cleanup_ctx.append(reload_ctx(watched, interval=0.01))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert watched.generation == 1  # loaded before the app serves
        path.write_text(TWO)
        os.utime(path, ns=(1, 1))
        for _ in range(500):
            if watched.generation == 2:
                break
            await asyncio.sleep(0.01)
        assert _hosts(watched.current) == ["api.frankfurter.app", "api.exchangerate.host"]
    finally:
        await runner.cleanup()
    path.write_text(ONE + "# changed after shutdown\n")
    await asyncio.sleep(0.05)
    assert watched.generation == 2  # the watcher is gone
