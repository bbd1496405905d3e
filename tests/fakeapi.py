"""A small in-memory Kubernetes API over real HTTP on loopback, for the controller's tests.

This is the fake at the Kubernetes API boundary (no cluster here): the kubernetes client and
its models are the real ones, talking HTTP to this server. It serves what the controller and
the client's leader election use: namespaces (list by label selector), ConfigMaps, Events,
Leases, and any ``/apis/<group>/<version>`` kind listed in ``served`` (get, list by label
selector, server-side apply by PATCH, delete). Apply merges the body into the stored object and
records the field manager, as the API server does for fields it owns. Every request is logged
in ``requests`` so tests can assert what was sent.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Key = tuple[str, str, str, str]  # (group/version, plural, namespace, name)

_NAMESPACED = re.compile(
    r"^/(?:api/(v1)|apis/([^/]+/[^/]+))/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
_CLUSTER = re.compile(r"^/(?:api/(v1)|apis/([^/]+/[^/]+))/([^/]+)(?:/([^/]+))?$")


def _merge(stored: Any, patch: Any) -> Any:
    if isinstance(stored, dict) and isinstance(patch, dict):
        merged = dict(stored)
        for key, value in patch.items():
            merged[key] = _merge(stored.get(key), value)
        return merged
    return copy.deepcopy(patch)


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, eq, value = term.partition("=")
        if (eq and labels.get(key) != value) or (not eq and key not in labels):
            return False
    return True


class FakeApi:
    def __init__(self, served: set[str]) -> None:
        self.served = served | {"v1/namespaces", "v1/configmaps", "v1/events",
                                "coordination.k8s.io/v1/leases"}
        self.objects: dict[Key, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], str]] = []
        self.lock = threading.Lock()
        self.version = 0
        self.fail_next: dict[tuple[str, str], int] = {}  # (method, name) -> status
        # Events the next watch of a kind streams: ((group/version, plural), type, object).
        self.watch_events: list[tuple[tuple[str, str], str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, reply = api.handle(self.command, self.path,
                                           self.headers.get("Content-Type", ""), body)
                stream = reply.get("__stream__") if isinstance(reply, dict) else None
                data = (b"".join(json.dumps(e).encode() + b"\n" for e in stream)
                        if stream is not None else json.dumps(reply).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeApi:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- test-side helpers ------------------------------------------------------------------

    def put(self, group_version: str, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        with self.lock:
            self.objects[(group_version, plural, meta.get("namespace", ""), meta["name"])] = \
                copy.deepcopy(obj)

    def stored(self, group_version: str, plural: str, namespace: str,
               name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self.objects.get((group_version, plural, namespace, name)))

    def names(self, group_version: str, plural: str) -> set[tuple[str, str]]:
        with self.lock:
            return {(k[2], k[3]) for k in self.objects if k[:2] == (group_version, plural)}

    # --- the API ----------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, content_type: str,
               body: Any) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        self.requests.append((method, parts.path, query, content_type))
        match = _NAMESPACED.match(parts.path)
        if match:
            core, gv, namespace, plural, name = match.groups()
        else:
            match = _CLUSTER.match(parts.path)
            if not match:
                return 404, _status(404)
            core, gv, plural, name = match.groups()
            namespace = ""
        group_version = core or gv
        if f"{group_version}/{plural}" not in self.served:
            return 404, _status(404)
        forced = self.fail_next.pop((method, name or ""), None)
        if forced:
            return forced, _status(forced)
        with self.lock:
            return self._dispatch(method, group_version, plural, namespace, name, query,
                                  content_type, body)

    def _dispatch(self, method: str, gv: str, plural: str, namespace: str, name: str | None,
                  query: dict[str, list[str]], content_type: str,
                  body: Any) -> tuple[int, dict[str, Any]]:
        if name is None and method == "GET" and query.get("watch") == ["true"]:
            # A watch: the queued events for this kind, then the stream ends (as on timeout).
            events = [e for e in self.watch_events if e[0] == (gv, plural)]
            self.watch_events = [e for e in self.watch_events if e[0] != (gv, plural)]
            return 200, {"__stream__": [{"type": kind, "object": obj}
                                        for _, kind, obj in events]}
        if name is None and method == "GET":
            selector = (query.get("labelSelector") or [None])[0]
            items = [copy.deepcopy(o) for k, o in sorted(self.objects.items())
                     if k[:2] == (gv, plural) and (not namespace or k[2] == namespace)
                     and _selected(o, selector)]
            return 200, {"apiVersion": gv, "kind": "List",
                         "metadata": {"resourceVersion": str(self.version)}, "items": items}
        if name is None and method == "POST":
            self.version += 1
            meta = body.setdefault("metadata", {})
            meta.setdefault("name", meta.get("generateName", "x") + str(self.version))
            meta["namespace"] = namespace or meta.get("namespace", "")
            meta["resourceVersion"] = str(self.version)
            key = (gv, plural, namespace, meta["name"])
            if key in self.objects:
                return 409, _status(409)
            self.objects[key] = body
            return 201, body
        key = (gv, plural, namespace, name or "")
        current = self.objects.get(key)
        if method == "GET":
            return (200, copy.deepcopy(current)) if current else (404, _status(404))
        if method == "DELETE":
            if current is None:
                return 404, _status(404)
            del self.objects[key]
            return 200, _status(200)
        if method == "PUT":
            if current is None:
                return 404, _status(404)
            self.version += 1
            body["metadata"]["resourceVersion"] = str(self.version)
            self.objects[key] = body
            return 200, body
        if method == "PATCH":
            if content_type != "application/apply-patch+yaml":
                return 415, _status(415)
            manager = (query.get("fieldManager") or [""])[0]
            if not manager:
                return 422, _status(422)
            self.version += 1
            merged = _merge(current or {}, body)
            meta = merged.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.version)
            meta["managedFields"] = [{"manager": manager, "operation": "Apply"}]
            self.objects[key] = merged
            return (200 if current else 201), merged
        return 405, _status(405)


def _status(code: int) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else
            "Success", "code": code, "reason": {404: "NotFound", 409: "AlreadyExists"}.get(
                code, "")}
