"""The only module that imports the ``kubernetes`` client.

Owns: loading credentials (in-cluster service account first, then a kubeconfig), and the few
API calls the webhook makes, all OFF the admission path: read/create/replace one Secret, and
read/JSON-patch Mutating/ValidatingWebhookConfigurations. API errors become the small
exception tree below so callers never see ``ApiException``.

Deliberately does not own: what to write (``webhook.certs.manager`` decides), retries (the
caller re-reads after a conflict), or anything the admission decision needs (that is always in
memory). The calls are blocking; async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)

WebhookKind = Literal["mutating", "validating"]
REQUEST_TIMEOUT_SECONDS = 10.0


class KubeError(Exception):
    """An API call failed for a reason the caller cannot fix by re-reading."""


class NotFoundError(KubeError):
    """404: the object does not exist."""


class ConflictError(KubeError):
    """409: the object already exists (create) or changed since we read it (replace)."""


@dataclass(frozen=True)
class StoredSecret:
    """A Secret as read back: decoded data and the resourceVersion for optimistic updates."""

    name: str
    namespace: str
    data: Mapping[str, bytes]
    resource_version: str
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEntry:
    name: str
    ca_bundle: bytes


class KubeApi(Protocol):
    """The boundary the certificate manager depends on; tests substitute a fake for it."""

    def read_secret(self, *, namespace: str, name: str) -> StoredSecret | None: ...

    def create_secret(
        self, *, namespace: str, name: str, data: Mapping[str, bytes], labels: Mapping[str, str]
    ) -> StoredSecret: ...

    def replace_secret(
        self,
        *,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str,
    ) -> StoredSecret: ...

    def read_webhooks(self, *, kind: WebhookKind, name: str) -> list[WebhookEntry] | None: ...

    def patch_webhooks(
        self, *, kind: WebhookKind, name: str, operations: Sequence[Mapping[str, Any]]
    ) -> None: ...


def _translate(exc: ApiException, what: str) -> KubeError:
    if exc.status == 404:
        return NotFoundError(f"{what}: not found")
    if exc.status == 409:
        return ConflictError(f"{what}: conflict")
    # exc.body may echo the request; for Secrets that is key material. Keep only the status.
    return KubeError(f"{what}: HTTP {exc.status} {exc.reason}")


def _json(response: Any) -> dict[str, Any]:
    # Responses are read raw (_preload_content=False) and parsed here: the generated models
    # disagree across client versions on whether Secret data and caBundle are str or bytes.
    parsed = json.loads(response.data)
    if not isinstance(parsed, dict):
        raise KubeError("unexpected API response")
    return parsed


def _stored(secret: Mapping[str, Any]) -> StoredSecret:
    meta = secret.get("metadata") or {}
    raw: Mapping[str, str] = secret.get("data") or {}
    return StoredSecret(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        data={key: base64.b64decode(value) for key, value in raw.items()},
        resource_version=str(meta.get("resourceVersion", "")),
        annotations=dict(meta.get("annotations") or {}),
    )


class KubernetesApi:
    """:class:`KubeApi` over the official client."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._admission = client.AdmissionregistrationV1Api(api_client)

    @classmethod
    def from_environment(cls) -> KubernetesApi:
        """In-cluster credentials when running in a pod, otherwise ``$KUBECONFIG``/~/.kube."""
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(client.ApiClient())

    def read_secret(self, *, namespace: str, name: str) -> StoredSecret | None:
        try:
            secret = self._core.read_namespaced_secret(
                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(exc, f"read Secret {namespace}/{name}") from None
        return _stored(_json(secret))

    def _body(
        self,
        *,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str | None,
    ) -> client.V1Secret:
        return client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                labels=dict(labels),
                resource_version=resource_version,
            ),
            type="kubernetes.io/tls",
            # base64 strings: what the wire format is, whatever the model's annotation says.
            data={key: base64.b64encode(value).decode("ascii") for key, value in data.items()},
        )

    def create_secret(
        self, *, namespace: str, name: str, data: Mapping[str, bytes], labels: Mapping[str, str]
    ) -> StoredSecret:
        body = self._body(
            namespace=namespace, name=name, data=data, labels=labels, resource_version=None
        )
        try:
            created = self._core.create_namespaced_secret(
                namespace, body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as exc:
            raise _translate(exc, f"create Secret {namespace}/{name}") from None
        return _stored(_json(created))

    def replace_secret(
        self,
        *,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str,
    ) -> StoredSecret:
        # resourceVersion in the body makes the PUT a compare-and-swap: a replica that read a
        # stale version gets 409 and re-reads instead of overwriting a newer certificate.
        body = self._body(
            namespace=namespace,
            name=name,
            data=data,
            labels=labels,
            resource_version=resource_version,
        )
        try:
            replaced = self._core.replace_namespaced_secret(
                name,
                namespace,
                body,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except ApiException as exc:
            raise _translate(exc, f"replace Secret {namespace}/{name}") from None
        return _stored(_json(replaced))

    def read_webhooks(self, *, kind: WebhookKind, name: str) -> list[WebhookEntry] | None:
        try:
            if kind == "mutating":
                response: Any = self._admission.read_mutating_webhook_configuration(
                    name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
            else:
                response = self._admission.read_validating_webhook_configuration(
                    name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(exc, f"read {kind} webhook configuration {name}") from None
        return [
            WebhookEntry(
                name=str(webhook.get("name", "")),
                ca_bundle=base64.b64decode((webhook.get("clientConfig") or {}).get("caBundle", "")),
            )
            for webhook in _json(response).get("webhooks") or []
        ]

    def patch_webhooks(
        self, *, kind: WebhookKind, name: str, operations: Sequence[Mapping[str, Any]]
    ) -> None:
        body = [dict(op) for op in operations]
        try:
            if kind == "mutating":
                self._admission.patch_mutating_webhook_configuration(
                    name,
                    body,
                    _content_type="application/json-patch+json",
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            else:
                self._admission.patch_validating_webhook_configuration(
                    name,
                    body,
                    _content_type="application/json-patch+json",
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
        except ApiException as exc:
            raise _translate(exc, f"patch {kind} webhook configuration {name}") from None
