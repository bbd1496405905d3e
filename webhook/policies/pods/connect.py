"""CONNECT to a pod: ``kubectl exec`` and ``kubectl attach`` never reach Istio's containers.

A process exec'd into ``istio-proxy`` runs as the proxy's UID, so its connections skip
capture: one ``socat`` there is a relay the agent uses over loopback. The request object of a
CONNECT on ``pods/exec`` or ``pods/attach`` is a ``PodExecOptions`` / ``PodAttachOptions``
naming the container. Without a name, the API server picks the pod's only container and
refuses the request when there are several; kubectl reads
``kubectl.kubernetes.io/default-container`` itself and then sends that name. An agent pod
always has its own container besides a classic ``istio-proxy`` (and a native one is an init
container), so an unnamed request never lands in the proxy, and a named one is judged here.
Istio's container names are reserved for Istio in agent pods (``pod.istio-reserved-names``).

``pods/portforward`` is deliberately not selected: it carries the client's traffic INTO the
pod (not egress from it), kubectl sends the ports in stream headers the webhook never sees, so
the only choice would be to refuse every port-forward to agent pods.

Owns ``validate_connect``; the pod itself is not in the request and is never fetched.
"""

from __future__ import annotations

from webhook.core.errors import Undecidable
from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.pods.istio import RESERVED_NAMES
from webhook.policies.result import Verdict, VerdictBuilder

RULE = "pod.istio-exec"
SUBRESOURCES = frozenset({"exec", "attach"})


def validate_connect(request: Request, context: Context) -> Verdict:
    """``pods/exec`` and ``pods/attach``: refuse Istio's containers as the target."""
    if request.sub_resource not in SUBRESOURCES:
        return Verdict()
    options = request.object
    if options is None:
        raise Undecidable(f"the CONNECT to pods/{request.sub_resource} carries no options "
                          "object, so the target container is unknown")
    container = options.get("container")
    builder = VerdictBuilder()
    if container is not None and not isinstance(container, str):
        builder.violate(RULE, "container", "must be a container name")
    elif container in RESERVED_NAMES:
        verb = request.sub_resource
        builder.violate(RULE, "container", f"{container!r} is Istio's; a process started "
                        "there runs as the proxy and its connections skip capture: "
                        f"{verb} into your own container instead (kubectl -c <name>)")
    return builder.build()
