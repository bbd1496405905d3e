"""The webhook's background cache of Skills: list, then watch, skills.agentsandbox.io.

Owns the kubernetes-client side of the cache that pods naming a Skill are checked against
(``webhook.policies.skill_pods``): a daemon thread lists every Skill, hands the whole set to
``publish`` (the cache is then synced), and follows a watch from that list's
resourceVersion, publishing after each change. A watch that ends is resumed; one that fails
(410 Gone, a network error) starts over with a fresh list, and until that list succeeds the
cache reports itself unsynced (``publish(None, reason)``), so such pods fail closed rather than
be judged against a stale view. Nothing here runs on the admission path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "agentsandbox.io", "v1alpha1", "skills"
RETRY_SECONDS = 5.0
WATCH_SECONDS = 300

Publish = Callable[[list[dict[str, Any]] | None, str], None]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class SkillWatcher:
    def __init__(self, api_client: client.ApiClient, publish: Publish) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skill-cache", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as exc:  # the next pass lists again; meanwhile: unsynced
                reason = f"listing or watching Skills failed: {exc}"
                logger.warning("%s; retrying in %.0f s", reason, RETRY_SECONDS)
                self._publish(None, reason)
            self._stop.wait(RETRY_SECONDS)

    def _list_and_watch(self) -> None:
        listed: Any = self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL,
                                                              _request_timeout=30)
        skills = {_key(item): item for item in listed.get("items") or []
                  if isinstance(item, dict)}
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        self._publish(list(skills.values()), "")
        while not self._stop.is_set():
            watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
            started = time.monotonic()
            for event in watcher.stream(self._custom.list_cluster_custom_object, GROUP,
                                        VERSION, PLURAL, resource_version=version,
                                        timeout_seconds=WATCH_SECONDS):
                obj = event.get("object")
                if not isinstance(obj, dict):
                    continue
                if event.get("type") == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") == "DELETED":
                    skills.pop(_key(obj), None)
                else:
                    skills[_key(obj)] = obj
                self._publish(list(skills.values()), "")
                if self._stop.is_set():
                    return
            if time.monotonic() - started < 1:  # a watch that ends at once: do not spin
                self._stop.wait(RETRY_SECONDS)
