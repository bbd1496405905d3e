"""Connecting the kubernetes client for the long-running background users (controller, Skill
cache): the pod's service account when in a cluster, else ``$KUBECONFIG``/~/.kube/config.

The configuration also becomes the client's default, because the client's ``LeaseLock``
builds its own ``CoordinationV1Api()`` from it.
"""

from __future__ import annotations

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from webhook.cluster.listing import SourceError


def connect() -> client.ApiClient:
    """The client, or ``SourceError`` (one clear sentence) when there are no credentials."""
    configuration = client.Configuration()
    try:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise SourceError(f"no cluster credentials (in-cluster or kubeconfig): {exc}") from exc
    client.Configuration.set_default(configuration)
    return client.ApiClient(configuration)
