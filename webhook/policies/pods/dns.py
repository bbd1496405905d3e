"""DNS (``pod.dns``): agent pods resolve names only through the filtering resolver.

Owns the expected ``dnsPolicy: None`` + ``dnsConfig`` for a namespace, the patch that forces
them, and the final-pod check that they are exactly as configured. With ``dnsPolicy: None``
resolv.conf is exactly ``dnsConfig``, so anything else could name another resolver. It does
not handle ``hostAliases`` (``isolation``) and cannot see the NetworkPolicy that should pair
with it.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.compiled import describe_dns as describe
from webhook.policies.pods.walk import join
from webhook.policies.result import PatchOp, VerdictBuilder

RULE = "pod.dns"
__all__ = ["RULE", "check_dns", "describe", "plan_dns"]


def plan_dns(spec: dict[str, Any], *, namespace: str, compiled: CompiledPolicy,
             pointer: str) -> list[tuple[tuple[PatchOp, ...], str]]:
    """(ops, note) pairs that force the resolver; empty when the pod already has it."""
    changes: list[tuple[tuple[PatchOp, ...], str]] = []
    policy = spec.get("dnsPolicy")
    if policy != "None":
        was = f" (was {policy})" if policy is not None else ""
        changes.append(((({"op": "add", "path": f"{pointer}/spec/dnsPolicy",
                           "value": "None"}),), f"set dnsPolicy=None{was}"))
    # The memo, compared as is; the patch gets its own copy (a patch applier may keep it).
    expected, description = compiled.expected_dns(namespace)
    current = spec.get("dnsConfig")
    if current != expected:
        if current:
            note = f"replace dnsConfig ({describe(current)}) with {description}"
        else:
            note = f"set dnsConfig {description}"
        changes.append((({"op": "add", "path": f"{pointer}/spec/dnsConfig",
                          "value": compiled.dns_config(namespace)},), note))
    return changes


def check_dns(spec: dict[str, Any], *, namespace: str | None, compiled: CompiledPolicy,
              builder: VerdictBuilder, path: str) -> None:
    """Final-pod check: dnsPolicy None and dnsConfig exactly as configured."""
    policy = spec.get("dnsPolicy")
    if policy != "None":
        builder.violate(RULE, join(path, "spec.dnsPolicy"), f"is {policy!r}, not 'None'; "
                        "agent pods resolve only through the filtering resolver: set "
                        "dnsPolicy: None (the mutating webhook does; is it installed?)")
    current = spec.get("dnsConfig")
    expected, description = compiled.expected_dns(namespace or "")
    if namespace is None and isinstance(current, dict):
        # A pod body without a namespace (and none given): accept any <ns>.svc.<domain> as
        # the first search, and check the rest exactly.
        searches = current.get("searches")
        suffix = f".svc.{compiled.cluster_domain}"
        if (isinstance(searches, list) and searches and isinstance(searches[0], str)
                and searches[0].endswith(suffix) and searches[0] != suffix.lstrip(".")):
            expected = compiled.dns_config("")  # a copy: the memo stays as it is
            expected["searches"][0] = searches[0]
            description = describe(expected)
    if current != expected:
        builder.violate(RULE, join(path, "spec.dnsConfig"), f"is {describe(current)}, not "
                        f"{description}; set exactly the filtering resolver's "
                        "dnsConfig (remove your own dnsConfig and let the webhook set it)")
