"""Connecting the kubernetes client for the long-running background users (controller, Skill
cache): the pod's service account when in a cluster, else ``$KUBECONFIG``/~/.kube/config.

The credentials are found exactly as for ``audit`` and ``doctor``
(``listing.api_client_from_environment``, which raises ``SourceError`` in one sentence when
there are none). The configuration also becomes the client's default, because the client's
``LeaseLock`` builds its own ``CoordinationV1Api()`` from it.
"""

from __future__ import annotations

from kubernetes import client

from webhook.cluster.listing import api_client_from_environment


def connect() -> client.ApiClient:
    api_client: client.ApiClient = api_client_from_environment()
    client.Configuration.set_default(api_client.configuration)
    return api_client
