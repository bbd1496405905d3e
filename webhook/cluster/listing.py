"""Where ``audit`` gets objects from: a read-only listing protocol and its kubernetes client.

Owns ``ObjectSource`` (the boundary ``webhook.tools.audit`` depends on, and the one tests replace
at the API-call level) and ``KubernetesSource``, which lists with the official client and
turns its models into the raw dicts an AdmissionReview would carry
(``ApiClient.sanitize_for_serialization``: camelCase keys, no ``None`` fields). List items
come back without ``kind``/``apiVersion``, so those are filled in here.

Deliberately read-only: only ``list_*`` calls, never a write, so ``audit`` can run with a
ClusterRole of get/list. It decides nothing about the objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from webhook.core.errors import WebhookError
from webhook.core.labels import ENFORCE_LABEL

REQUEST_TIMEOUT_SECONDS = 30.0


# The exit status of every command that finds no cluster to talk to (doctor, controller).
EXIT_UNREACHABLE = 2


class SourceError(WebhookError):
    """The cluster could not be reached or refused to list (the message says which call)."""


class ObjectSource(Protocol):
    """Read-only listing of the objects ``audit`` checks, as raw dicts."""

    def list_namespaces(self) -> list[dict[str, Any]]: ...

    def list_pods(self, namespace: str) -> list[dict[str, Any]]: ...

    def list_workloads(self, namespace: str) -> list[dict[str, Any]]: ...

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        """Services and Endpoints (core API) in one namespace."""
        ...

    def list_custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]] | None:
        """Every object of a custom resource in all namespaces; None when it is not served."""
        ...


@dataclass(frozen=True, slots=True)
class _Listing:
    api_version: str
    kind: str
    call: Callable[..., Any]


def api_client_from_environment(*, context: str | None = None) -> Any:
    """In-cluster credentials when running in a pod (and no context is asked for), else the
    kubeconfig's current context or ``context``."""
    try:
        if context is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                return client.ApiClient()
            except ConfigException:
                pass
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            context=context, client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise SourceError(f"no cluster credentials (in-cluster or kubeconfig): {exc}") from exc
    return client.ApiClient(configuration)


class KubernetesSource:
    """``ObjectSource`` over the kubernetes client (in-cluster config, else kubeconfig)."""

    def __init__(self, api_client: Any) -> None:
        self._client = api_client
        self._core = client.CoreV1Api(api_client)
        apps, batch = client.AppsV1Api(api_client), client.BatchV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._workloads = (
            _Listing("apps/v1", "Deployment", apps.list_namespaced_deployment),
            _Listing("apps/v1", "StatefulSet", apps.list_namespaced_stateful_set),
            _Listing("apps/v1", "DaemonSet", apps.list_namespaced_daemon_set),
            _Listing("apps/v1", "ReplicaSet", apps.list_namespaced_replica_set),
            _Listing("batch/v1", "Job", batch.list_namespaced_job),
            _Listing("batch/v1", "CronJob", batch.list_namespaced_cron_job),
        )

    @classmethod
    def from_environment(cls, *, context: str | None = None) -> KubernetesSource:
        return cls(api_client_from_environment(context=context))

    def list_namespaces(self) -> list[dict[str, Any]]:
        # Only labelled namespaces can be agent namespaces; the label's value is read later.
        listed = self._call("list namespaces", self._core.list_namespace,
                            label_selector=ENFORCE_LABEL)
        return self.to_dicts(listed, api_version="v1", kind="Namespace")

    def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        listed = self._call(f"list pods in {namespace}", self._core.list_namespaced_pod,
                            namespace)
        return self.to_dicts(listed, api_version="v1", kind="Pod")

    def list_workloads(self, namespace: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for listing in self._workloads:
            listed = self._call(f"list {listing.kind}s in {namespace}", listing.call,
                                namespace)
            found.extend(self.to_dicts(listed, api_version=listing.api_version,
                                       kind=listing.kind))
        return found

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for kind, call in (("Service", self._core.list_namespaced_service),
                           ("Endpoints", self._core.list_namespaced_endpoints)):
            listed = self._call(f"list {kind} in {namespace}", call, namespace)
            found.extend(self.to_dicts(listed, api_version="v1", kind=kind))
        return found

    def list_custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]] | None:
        """Also serves built-in API groups (``/apis/<group>/<version>/<plural>``)."""
        try:
            listed = self._custom.list_cluster_custom_object(
                group, version, plural, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise SourceError(f"list {plural}.{group}/{version}: {exc}") from exc
        except ApiException as exc:
            if exc.status == 404:
                return None  # the CRD (or this version of it) is not installed
            raise SourceError(f"list {plural}.{group}/{version}: {exc.status} {exc.reason}") \
                from exc
        items = listed.get("items", []) if isinstance(listed, dict) else []
        return [item for item in items if isinstance(item, dict)]

    def to_dicts(self, listed: Any, *, api_version: str, kind: str) -> list[dict[str, Any]]:
        """A client model list as raw dicts, each with the kind/apiVersion lists omit."""
        items = self._client.sanitize_for_serialization(listed).get("items") or []
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    @staticmethod
    def _call(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
        except ApiException as exc:
            raise SourceError(f"{what}: {exc.status} {exc.reason}") from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise SourceError(f"{what}: {exc}") from exc
