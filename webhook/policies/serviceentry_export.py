"""ServiceEntries as people write them: an absent ``exportTo`` becomes ``["."]``.

Istio's default for an unset (or empty) ``exportTo`` is to export the entry to every
namespace, so one namespace's entry would open egress for all. Refusing it
(``serviceentry.export-to``) is right about the risk and wrong about the remedy: the
ServiceEntries of ordinary demos have no ``exportTo``. Owns ``mutate_serviceentry``, which
sets it to the entry's own namespace with one warning, under the same rule id: enforced, it
patches; in warn mode it only says what it would set; off, it does nothing (and the
validating rule is off too). An ``exportTo`` that is set is never touched: the validating
webhook judges it as written.
"""

from __future__ import annotations

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder
from webhook.policies.serviceentries import EXPORT_TO

NOTE = ('set spec.exportTo=["."] (unset, Istio exports the entry to every namespace; now it '
        "applies to this namespace only)")


def mutate_serviceentry(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj) or not active(context.policy, EXPORT_TO):
        return Verdict()
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("exportTo") not in (None, []):
        return Verdict()  # no spec: the validating webhook refuses it with reasons
    b = VerdictBuilder()
    if context.policy.mutates(EXPORT_TO):
        b.mutate(EXPORT_TO, "exportTo",
                 ({"op": "add", "path": "/spec/exportTo", "value": ["."]},), NOTE)
    else:
        b.warn(f"[{EXPORT_TO}] would {NOTE}")
    return b.build()
