"""Keeping a parsed file current in the background: the policy file and the egress registry.

Owns ``WatchedFile`` (poll a file, re-parse it when it changed, keep the last good value when
the new one is missing or broken). ``webhook.server.background.reload_ctx`` runs the watchers
inside the server. It does not know what the files mean: the caller passes ``parse``, which
raises (``ConfigError`` by convention) on a bad file.

Change detection follows what a kubelet does to a ConfigMap volume: ``registry.yaml`` is a
symlink to ``..data/registry.yaml`` and ``..data`` is a symlink that is atomically swapped
to a new timestamped directory. ``os.stat`` follows both links, so the (device, inode,
mtime_ns, size) of the target plus the fully resolved path change on every swap, even
when the new file has the same size and timestamp as the old one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from webhook.core.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
Signature = tuple[str, int, int, int, int]


class WatchedFile(Generic[T]):
    """The last good parse of one file, with why the latest attempt failed (if it did).

    Nothing is read at construction: call ``poll()`` once at start-up. ``current`` stays None
    until a version parses; afterwards it only ever changes to another good version.
    """

    def __init__(self, path: Path, parse: Callable[[Path], T], *, name: str,
                 on_change: Callable[[T], None] | None = None) -> None:
        self.path = path
        self.name = name
        # Called with each new good version (from the watcher's thread): the owner swaps it in.
        self.on_change = on_change
        self._parse = parse
        self._current: T | None = None
        self._problem: str | None = None
        self._last_success: float | None = None
        self._generation = 0
        self._seen: Signature | None = None
        self._logged: str | None = None  # the state last logged, so each transition logs once

    @property
    def current(self) -> T | None:
        return self._current

    @property
    def problem(self) -> str | None:
        """Why the file on disk is not in use, or None when ``current`` is that file."""
        return self._problem

    @property
    def last_success(self) -> float | None:
        return self._last_success

    @property
    def generation(self) -> int:
        """How many good versions have been loaded (0: none yet)."""
        return self._generation

    def poll(self) -> bool:
        """Reload if the file changed; True when a new good version became current."""
        try:
            signature = self._signature()
        except OSError as exc:
            # Missing or unreadable: forget the signature, so the file's return reloads it.
            self._seen = None
            self._fail(f"{self.path}: cannot read the {self.name}: {exc.strerror or exc}")
            return False
        if signature == self._seen:
            return False
        self._seen = signature
        try:
            value = self._parse(self.path)
        except ConfigError as exc:
            self._fail(str(exc))
            return False
        except Exception as exc:  # a bug in parse must not stop the watcher
            log.exception("parsing the %s failed unexpectedly", self.name)
            self._fail(f"{self.path}: unexpected error while loading the {self.name}: {exc!r}")
            return False
        self._current = value
        self._problem = None
        self._last_success = time.time()
        self._generation += 1
        self._logged = None
        log.info("loaded the %s", self.name,
                 extra={"path": str(self.path), "generation": self._generation})
        if self.on_change is not None:
            self.on_change(value)
        return True

    async def watch(self, *, interval: float, stop: asyncio.Event) -> None:
        """Poll every ``interval`` seconds until ``stop`` is set (file I/O off the loop)."""
        while not stop.is_set():
            await asyncio.to_thread(self.poll)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue

    def _signature(self) -> Signature:
        resolved = os.path.realpath(self.path)
        st = os.stat(self.path)  # follows every symlink, like the kubelet's ..data flip
        return (resolved, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def _fail(self, problem: str) -> None:
        self._problem = problem
        if problem != self._logged:
            self._logged = problem
            kept = ("keeping the last good version" if self._current is not None else
                    "no good version has been loaded yet")
            log.warning("%s: %s", problem, kept,
                        extra={"path": str(self.path), "generation": self._generation})
