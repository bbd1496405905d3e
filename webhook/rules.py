"""The rule catalogue: every rule id the webhook can report, with its default mode.

This module owns the *names* of rules and what they mean to an operator. It deliberately
holds no logic: the policies under ``webhook.policies`` decide when a rule is broken, and
``webhook.config`` lets an operator change a rule's mode. A rule id is a stable public
interface (it appears in refusals, metrics, audit logs and the policy file), so ids are never
renamed, only added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Mode(StrEnum):
    """What happens when a rule is broken."""

    ENFORCE = "enforce"  # refuse the object (code 403)
    WARN = "warn"  # admit it, with a warning that names the rule
    OFF = "off"  # do not check (and, for mutating rules, do not mutate)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    applies_to: str
    summary: str
    default: Mode = Mode.ENFORCE


def _catalogue(*rules: Rule) -> Mapping[str, Rule]:
    by_id = {rule.id: rule for rule in rules}
    if len(by_id) != len(rules):
        raise ValueError("duplicate rule id in the catalogue")
    return MappingProxyType(by_id)


POD_RULES = (
    Rule("pod.runtime-class", "Pod", "runs in the approved RuntimeClass (set when absent; a "
         "foreign class is refused, never overwritten)"),
    Rule("pod.memory-floor", "Pod", "every app container has a memory request and limit, and "
         "the pod totals reach the floor the VM needs"),
    Rule("pod.kata-annotations", "Pod", "no io.katacontainers.* or runtime-handler annotations "
         "(per-pod hypervisor overrides)"),
    Rule("pod.host-namespaces", "Pod", "no hostNetwork, hostPID or hostIPC"),
    Rule("pod.host-ports", "Pod", "no hostPort on any container"),
    Rule("pod.host-path", "Pod", "no hostPath volumes"),
    Rule("pod.privileged", "Pod", "no privileged containers"),
    Rule("pod.proc-mount", "Pod", "no procMount other than Default"),
    Rule("pod.sysctls", "Pod", "no pod sysctls"),
    Rule("pod.share-process-namespace", "Pod", "no shareProcessNamespace"),
    Rule("pod.capabilities", "Pod", "no added capabilities outside Istio's init container"),
    Rule("pod.proxy-identity", "Pod", "no container, pod, group or fsGroup runs as the Istio "
         "proxy's UID/GID (its traffic would skip capture)"),
    Rule("pod.istio-inject", "Pod", "sidecar injection is on: inject label/annotation true, "
         "our istio.io/rev, no ambient opt-out"),
    Rule("pod.istio-reserved-names", "Pod", "no user container named istio-proxy, istio-init "
         "or istio-validation"),
    Rule("pod.istio-capture-annotations", "Pod", "no annotation that narrows traffic capture "
         "(excluded ranges, ports, interfaces, interception mode)"),
    Rule("pod.istio-proxy-override", "Pod", "no annotation that replaces the proxy, its image, "
         "template, bootstrap or volumes"),
    Rule("pod.istio-sidecar", "Pod", "the final pod carries istio-proxy and an init container "
         "that captures all outbound traffic"),
    Rule("pod.dns", "Pod", "dnsPolicy None with exactly the filtering resolver's dnsConfig"),
    Rule("pod.host-aliases", "Pod", "no hostAliases"),
)

RULES: Mapping[str, Rule] = _catalogue(*POD_RULES)
