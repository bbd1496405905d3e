"""What the egress policies (ServiceEntry, Skill) share: the registry or a fail-closed error,
when an object needs no check at all, and messages that say what the registry would need.

Owns the wording of registry refusals, so that a ServiceEntry and a Skill asking for the same
host get the same advice. It decides nothing by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook.config.policy import Policy
from webhook.core.errors import Undecidable
from webhook.core.review import Request
from webhook.core.rules import Mode
from webhook.egress.registry import PortProtocol, Refusal, Refused, Registry
from webhook.policies.context import Context


def active(policy: Policy, rule: str) -> bool:
    """Off rules are not evaluated at all (their lookups cost time and can fail closed)."""
    return policy.mode(rule) is not Mode.OFF


def needs_no_check(request: Request, obj: dict[str, Any]) -> bool:
    """Status writes and updates of an object being deleted change no egress.

    Refusing an UPDATE that removes a finalizer from a terminating object would leave it
    stuck forever, for example after the registry dropped one of its hosts.
    """
    if request.sub_resource == "status":
        return True
    metadata = obj.get("metadata")
    return (request.operation == "UPDATE" and isinstance(metadata, dict)
            and metadata.get("deletionTimestamp") is not None)


def require_registry(context: Context, *, what: str) -> Registry:
    if context.registry is not None:
        return context.registry
    raise Undecidable(
        f"cannot check {what}: {context.registry_problem}. No good egress registry has "
        "ever been loaded, so egress objects are refused (fail closed). An operator must fix "
        "the registry (the ConfigMap egress-registry, key "
        "registry.yaml, or the file given with --registry); the webhook reloads it without "
        "a restart.")


def ports_text(pairs: Iterable[PortProtocol]) -> str:
    return ", ".join(f"{{number: {port}, protocol: {proto}}}" for port, proto in sorted(pairs))


def entry_text(host: str, namespace: str, pairs: Iterable[PortProtocol]) -> str:
    return f"{{host: {host}, ports: [{ports_text(pairs)}], namespaces: [{namespace}]}}"


def refusal_text(refusal: Refusal, *, namespace: str,
                 wanted: Iterable[PortProtocol]) -> str:
    """Say why the registry refused ``refusal.host`` and what it would need to say."""
    host = refusal.host
    wanted = sorted(set(wanted))
    if refusal.reason is Refused.DENIED:
        deny = refusal.deny
        why = f" ({deny.reason})" if deny is not None and deny.reason else ""
        matched = f" as {deny.host}" if deny is not None and str(deny.host) != host else ""
        return (f"{host} is on the egress registry's deny list{matched}{why}; the deny list "
                "wins over every approval, so remove this host")
    if refusal.reason is Refused.NOT_LISTED:
        return (f"{host} is not in the egress registry for namespace {namespace}; to allow "
                f"it, add an entry {entry_text(host, namespace, wanted)} to the registry")
    if refusal.reason is Refused.UNDER_EXACT:
        return (f"{host} is under {refusal.key}, which has an exact registry entry; an exact "
                "entry approves only its own name and keeps broader *.suffix entries from "
                f"approving the names under it, so {host} is approved nowhere; to allow it, add "
                f"an entry {entry_text(host, namespace, wanted)}, or set subdomains: inherit on "
                f"the entry for {refusal.key}")
    if refusal.reason is Refused.NAMESPACE:
        return (f"{host} is in the egress registry (entry {refusal.key}) but not for namespace "
                f"{namespace}; to allow it, add {namespace} to that entry's namespaces, or add "
                f"an entry {entry_text(host, namespace, wanted)}")
    approved = ports_text(refusal.approved) or "no port"
    return (f"{host} is approved for namespace {namespace} on {approved} only; to allow "
            f"{ports_text(wanted)}, add it to the ports of the registry entry {refusal.key}")
