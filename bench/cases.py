"""The AdmissionReview bodies the benchmark sends, and the registry that approves its egress.

Owns the cases: the six of issue 6, a small pod, an ~8 KB pod (the captured ``pod-create.json``,
padded with environment variables to 8 KiB of compact JSON, which is what the API server
sends), a ~20 KB pod (sidecars, env, volumes), a refused pod (host network and the proxy's
UID), a ServiceEntry and a Skill, both approved by ``REGISTRY_YAML``; and the captured pod
after this webhook's mutation and Istio's injection, the validating half of a pod create.
Bodies are compact JSON bytes built once; the captured reviews come from
``tests/fixtures/reviews``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import orjson

REVIEWS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reviews"
TARGET_8K = 8 * 1024
TARGET_20K = 20 * 1024

# Approves exactly the egress of the ServiceEntry and Skill cases, in their namespace.
REGISTRY_YAML = """\
apiVersion: agentsandbox.io/v1alpha1
kind: EgressRegistry
entries:
  - host: api.frankfurter.app
    ports:
      - number: 443
        protocols: [TLS, HTTPS]
    namespaces: [agents]
    owner: bench
  - host: api.exchangerate.host
    ports:
      - number: 8443
        protocol: TLS
    namespaces: [agents]
    owner: bench
deny: []
"""


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark input: where it is POSTed, its body, and the verdict it must get."""

    name: str
    path: str
    body: bytes
    allowed: bool

    @property
    def stage(self) -> str:
        return self.path.strip("/")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((REVIEWS / name).read_bytes())
    return data


def _pod_review() -> dict[str, Any]:
    return load("pod-create.json")


def _size(review: dict[str, Any]) -> int:
    return len(orjson.dumps(review))


def _pad_env(review: dict[str, Any], target: int, container: int = 0) -> None:
    """Add environment variables to one container until the compact body reaches ``target``."""
    env = review["request"]["object"]["spec"]["containers"][container].setdefault("env", [])
    index = 0
    while _size(review) < target - 60:
        env.append({"name": f"AGENT_SETTING_{index:03d}", "value": f"value-{index:03d}"})
        index += 1


def small_pod() -> dict[str, Any]:
    """A bare agent pod: one container, no managedFields, no service-account volume."""
    review = _pod_review()
    pod = review["request"]["object"]
    pod["metadata"] = {"name": "small-agent", "namespace": "agents",
                       "labels": {"agentsandbox.io/agent": "small"}}
    spec = pod["spec"]
    spec["volumes"] = []
    container = spec["containers"][0]
    container["volumeMounts"] = []
    container.pop("readinessProbe", None)
    return review


def pod_8k() -> dict[str, Any]:
    review = _pod_review()
    _pad_env(review, TARGET_8K)
    return review


def pod_20k() -> dict[str, Any]:
    """Four containers and an init container, each with env and mounts, plus volumes."""
    review = _pod_review()
    spec = review["request"]["object"]["spec"]
    base = spec["containers"][0]
    for index in range(1, 4):
        extra = copy.deepcopy(base)
        extra["name"] = f"tool-{index}"
        extra["ports"] = [{"name": f"http-{index}", "containerPort": 8080 + index,
                           "protocol": "TCP"}]
        extra.pop("readinessProbe", None)
        spec["containers"].append(extra)
    init = copy.deepcopy(base)
    init["name"] = "fetch-model"
    init.pop("ports", None)
    init.pop("readinessProbe", None)
    spec["initContainers"] = [init]
    for index in range(8):
        name = f"data-{index}"
        spec["volumes"].append({"name": name, "configMap": {"name": f"agent-data-{index}"}})
        for container in spec["containers"]:
            container["volumeMounts"].append({"name": name, "mountPath": f"/data/{index}",
                                              "readOnly": True})
    for index in range(len(spec["containers"])):
        _pad_env(review, TARGET_8K + (TARGET_20K - TARGET_8K) * (index + 1) // 4, index)
    return review


def refused_pod() -> dict[str, Any]:
    """Host network and the Istio proxy's UID: both refused at the mutating stage."""
    review = small_pod()
    spec = review["request"]["object"]["spec"]
    spec["hostNetwork"] = True
    spec["securityContext"]["runAsUser"] = 1337
    return review


def final_pod() -> dict[str, Any]:
    """The captured pod as the validating webhook sees it: mutated by this webhook's default
    policy, then injected by Istio (the captured ``final-pod-after-injection.json`` is Istio's
    injection of the same pod; the webhook's patch applies to it unchanged)."""
    from webhook.config.policy import load_policy
    from webhook.policies.pods import mutate_pod_object

    created = _pod_review()["request"]["object"]
    verdict = mutate_pod_object(created, namespace="agents", policy=load_policy(None))
    review = load("final-pod-after-injection.json")
    ops = [op for mutation in verdict.mutations for op in mutation.ops]
    review["request"]["object"] = jsonpatch.apply_patch(review["request"]["object"], ops)
    return review


def build_cases() -> list[Case]:
    def case(name: str, path: str, review: dict[str, Any], allowed: bool) -> Case:
        return Case(name, path, orjson.dumps(review), allowed)

    return [
        case("pod-small", "/mutate", small_pod(), True),
        case("pod-8k", "/mutate", pod_8k(), True),
        case("pod-20k", "/mutate", pod_20k(), True),
        case("pod-refused", "/mutate", refused_pod(), False),
        case("pod-final", "/validate", final_pod(), True),
        case("serviceentry", "/validate", load("serviceentry-v1.json"), True),
        case("skill", "/validate", load("skill-create.json"), True),
    ]


def write_registry(directory: Path) -> Path:
    path = directory / "registry.yaml"
    path.write_text(REGISTRY_YAML)
    return path
