"""NetworkPolicy admission in agent namespaces: a tenant policy cannot widen egress past the
rendered floor (UDP, SCTP, every protocol), while TCP and DNS to the resolver stay allowed."""

from __future__ import annotations

from typing import Any

import pytest
from objectreview import request_for

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.policies.context import Context

RULE = "networkpolicy.widens-egress"
POLICY = load_policy(None)  # resolver 10.96.0.53
RESOLVER = [{"ipBlock": {"cidr": "10.96.0.53/32"}}]


def policy_object(egress: list[dict[str, Any]] | None, *,
                  types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}}
    if types is not None:
        spec["policyTypes"] = types
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "tenant", "namespace": "agents"}, "spec": spec}


def decide(obj: dict[str, Any], policy: Any = POLICY) -> Any:
    return admit(request_for(obj), stage=Stage.VALIDATE, context=Context(policy=policy))


REFUSED = {
    "allow all egress": [{}],
    "all protocols to one namespace": [{"to": [{"namespaceSelector": {}}]}],
    "UDP anywhere": [{"ports": [{"protocol": "UDP", "port": 443}]}],
    "QUIC to the internet": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                              "ports": [{"protocol": "UDP", "port": 443}]}],
    "DNS to a public resolver": [{"to": [{"ipBlock": {"cidr": "8.8.8.8/32"}}],
                                  "ports": [{"protocol": "UDP", "port": 53}]}],
    "DNS to the resolver and beyond": [{"to": [*RESOLVER, {"ipBlock": {"cidr": "1.1.1.1/32"}}],
                                        "ports": [{"protocol": "UDP", "port": 53}]}],
    "DNS to a resolver range": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/24"}}],
                                 "ports": [{"protocol": "UDP", "port": 53}]}],
    "a UDP port range over 53": [{"to": RESOLVER,
                                  "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}]}],
    "SCTP": [{"ports": [{"protocol": "SCTP", "port": 9899}]}],
    "empty ports": [{"ports": []}],
    "egress rules with policyTypes unset": [{"to": [{"podSelector": {}}]}],
}
ADMITTED = {
    "TCP anywhere": [{"ports": [{"protocol": "TCP"}]}],
    "TCP by default protocol": [{"to": [{"podSelector": {}}], "ports": [{"port": 8080}]}],
    "DNS to the resolver": [{"to": RESOLVER, "ports": [{"protocol": "UDP", "port": 53},
                                                       {"protocol": "TCP", "port": 53}]}],
    "deny all egress": [],
}


@pytest.mark.parametrize("egress", REFUSED.values(), ids=REFUSED.keys())
def test_a_tenant_policy_that_reopens_non_tcp_egress_is_refused(egress: list[Any]) -> None:
    types = None if egress == REFUSED["egress rules with policyTypes unset"] else ["Egress"]
    outcome = decide(policy_object(egress, types=types))
    assert not outcome.allowed
    assert outcome.rules == (RULE,)
    assert "spec.egress[0]" in outcome.review["response"]["status"]["message"]


@pytest.mark.parametrize("egress", ADMITTED.values(), ids=ADMITTED.keys())
def test_tcp_and_dns_to_the_resolver_are_admitted(egress: list[Any]) -> None:
    assert decide(policy_object(egress, types=["Egress"])).allowed


def test_an_ingress_only_policy_is_not_judged() -> None:
    assert decide(policy_object([{}], types=["Ingress"])).allowed


def test_the_rule_in_warn_mode_admits_with_a_warning_and_off_admits_silently() -> None:
    widening = policy_object([{}], types=["Egress"])
    warned = decide(widening, parse_policy(f"rules: {{{RULE}: warn}}\n", source="test"))
    assert warned.allowed
    assert any(RULE in warning for warning in warned.warnings)
    off = decide(widening, parse_policy(f"rules: {{{RULE}: 'off'}}\n", source="test"))
    assert off.allowed
    assert not off.warnings


def test_the_refusal_says_what_to_write_instead() -> None:
    outcome = decide(policy_object([{"ports": [{"protocol": "UDP", "port": 443}]}],
                                   types=["Egress"]))
    message = outcome.review["response"]["status"]["message"]
    assert f"[{RULE}] spec.egress[0].ports[0]: UDP egress" in message
    assert "10.96.0.53" in message
    assert "use TCP" in message
