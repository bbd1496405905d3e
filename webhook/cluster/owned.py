"""The controller's cluster side: read its inputs, apply and delete the objects it owns.

Owns every kubernetes-client call the controller makes (this package is the only one allowed
to import the client): list the enforced namespaces and watch them, read and watch the
registry ConfigMap, read one object, server-side apply with the controller's own field
manager, list objects by the ``managed-by`` label, delete by name, and record Events. API
errors become ``KubeError``/``NotFoundError``. It decides nothing: which objects to apply or
delete is ``webhook.controller.plan``'s job.

Custom kinds (Istio's, AdminNetworkPolicy) and NetworkPolicies go through the client's
generic ``CustomObjectsApi`` (it serves any ``/apis/<group>/<version>`` path), ConfigMaps,
Namespaces and Events through ``CoreV1Api``, whose responses are the client's own models.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from webhook.cluster.kube import KubeError, NotFoundError
from webhook.core.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE

logger = logging.getLogger(__name__)

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
REQUEST_TIMEOUT_SECONDS = 10.0
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
SKILLS = ("agentsandbox.io", "v1alpha1", "skills")  # read only: per-Skill Sidecars


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectKey:
        meta = obj.get("metadata") or {}
        return cls(str(obj["apiVersion"]), str(obj["kind"]), str(meta.get("namespace") or ""),
                   str(meta["name"]))


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version


# Every kind the controller writes. It lists (to delete what is no longer rendered) only the
# LISTED kinds: the one ConfigMap it writes, the resolver allowlist, is rendered on every
# reconcile and so never needs deleting, and listing ConfigMaps would need rights to all.
OWNED_KINDS = (
    Kind("networking.istio.io/v1", "ServiceEntry", "serviceentries", namespaced=True),
    Kind("networking.istio.io/v1", "Sidecar", "sidecars", namespaced=True),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", namespaced=True),
    Kind("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies",
         namespaced=False),
    Kind("v1", "ConfigMap", "configmaps", namespaced=True),
)
_BY_KIND = {(k.api_version, k.kind): k for k in OWNED_KINDS}
LISTED_KINDS = tuple(k for k in OWNED_KINDS if k.kind != "ConfigMap")


def kind_of(key: ObjectKey) -> Kind:
    try:
        return _BY_KIND[(key.api_version, key.kind)]
    except KeyError:
        raise KubeError(f"{key}: not a kind the controller manages") from None


class ClusterObjects:
    """The calls above, over one ``ApiClient``, writing as ``field_manager``."""

    def __init__(self, api_client: client.ApiClient, *, field_manager: str,
                 config_namespace: str) -> None:
        self._client = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self.field_manager = field_manager
        # Where Events about cluster-scoped objects go.
        self.config_namespace = config_namespace

    # --- inputs -------------------------------------------------------------------------

    def namespaces_labelled(self, label: str, value: str) -> list[str]:
        listed = _call(f"list namespaces {label}={value}", self._core.list_namespace,
                       label_selector=f"{label}={value}")
        return sorted(ns.metadata.name for ns in listed.items if ns.metadata is not None)

    def read_configmap_key(self, *, namespace: str, name: str, key: str) -> str | None:
        """The value of ``key``, or None when the ConfigMap or the key is missing."""
        try:
            found = _call(f"read ConfigMap {namespace}/{name}",
                          self._core.read_namespaced_config_map, name, namespace)
        except NotFoundError:
            return None
        data = found.data or {}
        value = data.get(key)
        return value if isinstance(value, str) else None

    def stream(self, what: str, list_call: Callable[..., Any], *args: Any,
               timeout_seconds: int, **kwargs: Any) -> Iterator[str]:
        watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
        for event in watcher.stream(list_call, *args, timeout_seconds=timeout_seconds,
                                    **kwargs):
            yield f"{what} {event['type']}"

    def watch_namespaces(self, *, label: str, timeout_seconds: int) -> Iterator[str]:
        return self.stream("namespace", self._core.list_namespace, label_selector=label,
                           timeout_seconds=timeout_seconds)

    def list_skills(self) -> list[dict[str, Any]]:
        """Every Skill in the cluster (none when the Skill CRD is not installed)."""
        try:
            listed = _call("list Skills", self._custom.list_cluster_custom_object, *SKILLS)
        except NotFoundError:
            return []
        return [item for item in _checked(listed).get("items") or []
                if isinstance(item, dict)]

    def watch_skills(self, *, timeout_seconds: int) -> Iterator[str]:
        return self.stream("skill", self._custom.list_cluster_custom_object, *SKILLS,
                           timeout_seconds=timeout_seconds)

    def watch_configmap(self, *, namespace: str, name: str,
                        timeout_seconds: int) -> Iterator[str]:
        return self.stream("registry", self._core.list_namespaced_config_map, namespace,
                           field_selector=f"metadata.name={name}",
                           timeout_seconds=timeout_seconds)

    # --- owned objects --------------------------------------------------------------------

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        kind = kind_of(key)
        try:
            if kind.kind == "ConfigMap":
                found = _call(f"read {key}", self._core.read_namespaced_config_map, key.name,
                              key.namespace)
                return _as_dict(self._client, found, kind)
            group, version = kind.group_version
            if kind.namespaced:
                return _checked(_call(f"read {key}",
                                      self._custom.get_namespaced_custom_object, group,
                                      version, key.namespace, kind.plural, key.name))
            return _checked(_call(f"read {key}", self._custom.get_cluster_custom_object,
                                  group, version, kind.plural, key.name))
        except NotFoundError:
            return None

    def list_owned(self) -> list[dict[str, Any]]:
        """Every object of a listed kind carrying the managed-by label, across the cluster.

        A kind whose API is not served (no Istio, no AdminNetworkPolicy CRD) lists nothing.
        """
        found: list[dict[str, Any]] = []
        for kind in LISTED_KINDS:
            group, version = kind.group_version
            try:
                listed = _call(f"list owned {kind.plural}",
                               self._custom.list_cluster_custom_object, group, version,
                               kind.plural, label_selector=OWNED_SELECTOR)
            except NotFoundError:
                continue
            items = _checked(listed).get("items") or []
            found.extend({"apiVersion": kind.api_version, "kind": kind.kind, **item}
                         for item in items if isinstance(item, dict))
        return found

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply as this controller's field manager (force: the fields are ours)."""
        key = ObjectKey.of(obj)
        kind = kind_of(key)
        options: dict[str, Any] = {"field_manager": self.field_manager, "force": True,
                                   "_content_type": APPLY_CONTENT_TYPE}
        if kind.kind == "ConfigMap":
            _call(f"apply {key}", self._core.patch_namespaced_config_map, key.name,
                  key.namespace, obj, **options)
            return
        group, version = kind.group_version
        if kind.namespaced:
            _call(f"apply {key}", self._custom.patch_namespaced_custom_object, group, version,
                  key.namespace, kind.plural, key.name, obj, **options)
        else:
            _call(f"apply {key}", self._custom.patch_cluster_custom_object, group, version,
                  kind.plural, key.name, obj, **options)

    def delete(self, key: ObjectKey) -> None:
        kind = kind_of(key)
        try:
            if kind.kind == "ConfigMap":
                _call(f"delete {key}", self._core.delete_namespaced_config_map, key.name,
                      key.namespace)
                return
            group, version = kind.group_version
            if kind.namespaced:
                _call(f"delete {key}", self._custom.delete_namespaced_custom_object, group,
                      version, key.namespace, kind.plural, key.name)
            else:
                _call(f"delete {key}", self._custom.delete_cluster_custom_object, group,
                      version, kind.plural, key.name)
        except NotFoundError:
            return  # already gone: what we wanted

    def record_event(self, key: ObjectKey, *, reason: str, message: str, warning: bool,
                     component: str) -> None:
        """A core/v1 Event about ``key`` (cluster-scoped objects: in the config namespace)."""
        now = datetime.datetime.now(datetime.UTC)
        namespace = key.namespace or self.config_namespace
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{key.name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=key.api_version, kind=key.kind, name=key.name,
                namespace=key.namespace or None),
            reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=component), reporting_component=component,
            first_timestamp=now, last_timestamp=now, count=1)
        _call(f"record an Event about {key}", self._core.create_namespaced_event, namespace,
              event)


def _as_dict(api_client: client.ApiClient, model: Any, kind: Kind) -> dict[str, Any]:
    raw = api_client.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return {"apiVersion": kind.api_version, "kind": kind.kind, **raw}


def _checked(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise KubeError("unexpected API response")
    return value


def _call(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            raise NotFoundError(f"{what}: not found") from None
        raise KubeError(f"{what}: HTTP {exc.status} {exc.reason}") from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise KubeError(f"{what}: {exc}") from None
