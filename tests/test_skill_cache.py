"""The webhook's background Skill cache against the kubernetes client's real list and watch,
faked only at the HTTP boundary (tests/fakeapi.py; no cluster here): unsynced until the first
list, then every change published; a failed list or watch makes it unsynced again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakeapi import FakeApi
from kubernetes import client

from webhook.admission.engine import Engine
from webhook.cluster.skillwatch import SkillWatcher
from webhook.config.policy import load_policy
from webhook.policies.context import SkillCatalog

SKILLS = ("agentsandbox.io/v1alpha1", "skills")


def skill(name: str) -> dict[str, Any]:
    return {"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
            "metadata": {"name": name, "namespace": "agents"},
            "spec": {"egressRequirements": []}}


class Views:
    def __init__(self) -> None:
        self.seen: list[tuple[set[str] | None, str]] = []
        self.changed = threading.Condition()

    def publish(self, skills: list[dict[str, Any]] | None, problem: str) -> None:
        with self.changed:
            names = None if skills is None else {s["metadata"]["name"] for s in skills}
            self.seen.append((names, problem))
            self.changed.notify_all()

    def wait_for(self, wanted: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(view == wanted for view, _ in self.seen):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"never saw {wanted}: {self.seen}"
                self.changed.wait(remaining)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi({"agentsandbox.io/v1alpha1/skills"}) as fake:
        fake.put(*SKILLS, skill("currency-rates"))
        yield fake


def _watch(api: FakeApi, views: Views) -> Iterator[SkillWatcher]:
    api_client = client.ApiClient(client.Configuration(host=api.url))
    watcher = SkillWatcher(api_client, views.publish)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        watcher.join(timeout=15)
        api_client.close()


def test_the_first_list_syncs_the_cache_and_watch_events_keep_it(api: FakeApi) -> None:
    views = Views()
    api.watch_events.append((SKILLS, "ADDED", skill("news")))
    api.watch_events.append((SKILLS, "DELETED", skill("currency-rates")))
    for _ in _watch(api, views):
        views.wait_for({"currency-rates"})
        views.wait_for({"currency-rates", "news"})
        views.wait_for({"news"})
    assert views.seen[0] == ({"currency-rates"}, "")


def test_a_cluster_without_the_skill_crd_leaves_the_cache_unsynced_with_a_reason() -> None:
    views = Views()
    with FakeApi(set()) as api:
        for _ in _watch(api, views):
            views.wait_for(None)
    (view, problem) = views.seen[0]
    assert view is None
    assert "404" in problem


def test_the_engine_hands_each_view_to_both_contexts() -> None:
    engine = Engine(policy=load_policy(None))
    assert engine.contexts.enforce.skills is None
    engine.set_skills(SkillCatalog([skill("fx")]))
    assert engine.contexts.enforce.skills is not None
    assert engine.contexts.warn.skills is engine.contexts.enforce.skills
    assert engine.contexts.enforce.skills.get("agents", "fx") is not None
    engine.set_skills(None, "watch failed")
    assert engine.contexts.enforce.skills is None
    assert engine.contexts.enforce.skills_problem == "watch failed"
