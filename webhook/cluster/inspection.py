"""What ``doctor`` reads from a live cluster: read-only GETs and LISTs, as raw dicts.

Owns ``ClusterInspector`` (the boundary ``webhook.tools.doctor`` depends on) and
``KubernetesInspector``, which makes each call with the official client's API classes and
returns the JSON the API server sent (``_preload_content=False``), so what the checks see is
what ``kubectl get -o json`` shows. A missing object is ``None``; a call the cluster refuses
(403, not served, unreachable) raises ``SourceError`` naming the call, and the caller turns it
into a failed check rather than a crash.

Deliberately read-only (only ``read_*``/``list_*``/``get_code``; no exec, no port-forward, no
write), and it keeps nothing secret: of the certificate Secret only ``tls.crt`` and ``ca.crt``
leave this module, never a key. It decides nothing about what it reads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.cluster.listing import SourceError

REQUEST_TIMEOUT_SECONDS = 15.0
PUBLIC_SECRET_KEYS = ("tls.crt", "ca.crt")


class ClusterInspector(Protocol):
    """The reads ``doctor`` makes. ``None`` means "not there"; errors raise ``SourceError``."""

    def version(self) -> dict[str, Any]: ...

    def list_namespaces(self) -> list[dict[str, Any]]: ...

    def list_mutating_webhooks(self) -> list[dict[str, Any]]: ...

    def read_validating_webhook(self, name: str) -> dict[str, Any] | None: ...

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def read_certificates(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The public half of a TLS Secret: ``tls.crt`` and ``ca.crt`` when present."""
        ...

    def read_runtime_class(self, name: str) -> dict[str, Any] | None: ...

    def list_nodes(self, label_selector: str) -> list[dict[str, Any]]: ...

    def list_services(self) -> list[dict[str, Any]]: ...

    def list_endpoint_slices(self, namespace: str | None = None,
                             service: str | None = None) -> list[dict[str, Any]]: ...

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def read_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_sidecars(self, namespace: str) -> list[dict[str, Any]] | None:
        """Istio Sidecars in a namespace; None when the Sidecar kind is not served."""
        ...


class KubernetesInspector:
    """``ClusterInspector`` over the kubernetes client."""

    SIDECAR_VERSIONS = ("v1", "v1beta1", "v1alpha3")

    def __init__(self, api_client: Any) -> None:
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._admission = client.AdmissionregistrationV1Api(api_client)
        self._node = client.NodeV1Api(api_client)
        self._discovery = client.DiscoveryV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._version = client.VersionApi(api_client)

    def version(self) -> dict[str, Any]:
        found = _get("read the server version", self._version.get_code)
        return found or {}

    def list_namespaces(self) -> list[dict[str, Any]]:
        return _items("list namespaces", self._core.list_namespace)

    def list_mutating_webhooks(self) -> list[dict[str, Any]]:
        return _items("list mutating webhook configurations",
                      self._admission.list_mutating_webhook_configuration)

    def read_validating_webhook(self, name: str) -> dict[str, Any] | None:
        return _get(f"read validating webhook configuration {name}",
                    self._admission.read_validating_webhook_configuration, name)

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _get(f"read ConfigMap {namespace}/{name}", self._core.read_namespaced_config_map,
                    name, namespace)

    def read_certificates(self, namespace: str, name: str) -> dict[str, bytes] | None:
        secret = _get(f"read Secret {namespace}/{name}", self._core.read_namespaced_secret,
                      name, namespace)
        if secret is None:
            return None
        data = secret.get("data") or {}
        # The CA and serving keys are in the same Secret: they are dropped here, unread.
        return {key: base64.b64decode(data[key]) for key in PUBLIC_SECRET_KEYS if key in data}

    def read_runtime_class(self, name: str) -> dict[str, Any] | None:
        return _get(f"read RuntimeClass {name}", self._node.read_runtime_class, name)

    def list_nodes(self, label_selector: str) -> list[dict[str, Any]]:
        return _items("list nodes", self._core.list_node, label_selector=label_selector)

    def list_services(self) -> list[dict[str, Any]]:
        return _items("list services", self._core.list_service_for_all_namespaces)

    def list_endpoint_slices(self, namespace: str | None = None,
                             service: str | None = None) -> list[dict[str, Any]]:
        selector = f"kubernetes.io/service-name={service}" if service else None
        if namespace is None:
            return _items("list endpoint slices",
                          self._discovery.list_endpoint_slice_for_all_namespaces,
                          label_selector=selector)
        return _items(f"list endpoint slices in {namespace}",
                      self._discovery.list_namespaced_endpoint_slice, namespace,
                      label_selector=selector)

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _get(f"read Deployment {namespace}/{name}", self._apps.read_namespaced_deployment,
                    name, namespace)

    def read_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        return _get(f"read NetworkPolicy {namespace}/{name}",
                    self._networking.read_namespaced_network_policy, name, namespace)

    def list_sidecars(self, namespace: str) -> list[dict[str, Any]] | None:
        for version in self.SIDECAR_VERSIONS:
            listed = _get(f"list Sidecars in {namespace}",
                          self._custom.list_namespaced_custom_object, "networking.istio.io",
                          version, namespace, "sidecars")
            if listed is not None:
                items = listed.get("items") or []
                return [item for item in items if isinstance(item, dict)]
        return None


def _get(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    try:
        response = call(*args, _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise SourceError(f"{what}: HTTP {exc.status} {exc.reason}") from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise SourceError(f"{what}: {exc}") from exc
    try:
        parsed = json.loads(response.data)
    except ValueError as exc:
        raise SourceError(f"{what}: the answer is not JSON") from exc
    if not isinstance(parsed, dict):
        raise SourceError(f"{what}: unexpected answer")
    return parsed


def _items(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    listed = _get(what, call, *args, **kwargs)
    if listed is None:
        raise SourceError(f"{what}: not served by this cluster")
    return [item for item in listed.get("items") or [] if isinstance(item, dict)]
