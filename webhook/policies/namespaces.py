"""Namespace admission: the ``agentsandbox.io/enforce`` label is the switch for everything.

Removing it (or turning ``true`` into ``warn`` or anything else) switches off every check for
the namespace's pods and egress objects, so it is an escape unless done by the people allowed
to break glass. Owns ``validate_namespace``: on UPDATE of a namespace whose label is
``true`` or ``warn``, refuse a removal or change, except ``warn`` -> ``true`` (tightening) and
requests from a group in the policy's ``enforceLabel.breakGlassGroups``, which are admitted
with a warning that names the user. Adding the label is never refused. It reads the request's
user groups only, never the API. The ``status`` and ``finalize`` subresources are judged the
same way: their strategies reset only the spec (status) or the status (finalize), so either
can change the labels.
"""

from __future__ import annotations

from typing import Any

from webhook.core.labels import ENFORCE_LABEL
from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active
from webhook.policies.result import Verdict, VerdictBuilder

ENFORCE_LABEL_RULE = "namespace.enforce-label"
GUARDED_VALUES = frozenset({"true", "warn"})


def _label(obj: dict[str, Any] | None) -> str | None:
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    value = labels.get(ENFORCE_LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else None


def validate_namespace(request: Request, context: Context) -> Verdict:
    if request.operation != "UPDATE":
        return Verdict()
    old, new = _label(request.old_object), _label(request.object)
    if old not in GUARDED_VALUES or new == old or (old, new) == ("warn", "true"):
        return Verdict()
    if not active(context.policy, ENFORCE_LABEL_RULE):
        return Verdict()
    change = f"removes {ENFORCE_LABEL}={old}" if new is None else (
        f"changes {ENFORCE_LABEL} from {old!r} to {new!r}")
    groups = context.policy.enforce_label.break_glass_groups
    breaking = sorted(set(groups).intersection(request.groups))
    if breaking:
        who = request.username or "a user"
        return Verdict(warnings=(f"[{ENFORCE_LABEL_RULE}] break glass: {who} (group "
                                 f"{breaking[0]}) {change} on namespace {request.name}; its "
                                 "agent pods and egress objects are no longer checked",))
    b = VerdictBuilder()
    allowed = ", ".join(groups) if groups else "none are configured"
    b.violate(ENFORCE_LABEL_RULE, f"metadata.labels[{ENFORCE_LABEL}]", f"this {change}, which "
              "switches off the checks of every agent pod and egress object in the namespace; "
              "only members of the policy's enforceLabel.breakGlassGroups "
              f"({allowed}) may; keep the label, or ask a member of those groups")
    return b.build()
