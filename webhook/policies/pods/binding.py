"""``pods/binding`` CREATE: the annotations a Binding copies onto the pod it binds.

Owns ``validate_binding``. The API server's binding storage merges ``Binding.metadata.annotations``
into the live pod's annotations when it sets ``nodeName``, so a Binding is a way to add an
annotation after admission (``proxy.istio.io/config``, a capture exclusion, a Kata override)
that no pod UPDATE review sees. Each annotation is judged as if a pod UPDATE added it. The
scheduler's own Bindings carry none and are admitted. It does not judge the target node.
"""

from __future__ import annotations

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.pods.update import check_metadata_update
from webhook.policies.result import Verdict


def validate_binding(request: Request, context: Context) -> Verdict:
    binding = request.object
    if request.operation != "CREATE" or not isinstance(binding, dict):
        return Verdict()
    metadata = binding.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not annotations:
        return Verdict()
    # Judged as an UPDATE from a pod without them to one with them: every one counts as added.
    return check_metadata_update({"metadata": {"annotations": annotations}, "spec": {}},
                                 {"metadata": {}, "spec": {}},
                                 policy=context.policy)
