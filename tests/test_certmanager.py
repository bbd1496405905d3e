"""Self-managed certificates: the pure decisions, then the manager loop.

The decisions (``webhook.certs.rotation``) are tested with real certificates from
``cryptography``. The manager is tested against :class:`FakeKube`, a boundary fake of
``webhook.cluster.kube.KubeApi`` (the one place the kubernetes client is used), because no API
server runs here; it implements the API semantics the manager relies on: 409 on create of an
existing Secret, resourceVersion compare-and-swap on replace, and JSON patch ``test``/``add``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from webhook.certs.manager import CertManagerSettings, SecretCertificateManager
from webhook.certs.pki import decode_certificate, generate_ca, service_dns_names
from webhook.certs.rotation import (
    Action,
    CertificateSet,
    RenewalPolicy,
    apply_action,
    ca_bundle_patch,
    decide,
    fingerprint,
    merge_bundle,
    parse_secret,
    secret_data,
    signed_by,
)
from webhook.cluster.kube import ConflictError, StoredSecret, WebhookEntry, WebhookKind
from webhook.server.background import secret_manager_ctx
from webhook.server.tls import ServingTLS

# Relative to the real clock: ServingTLS refuses certificates that are expired right now.
T0 = datetime.now(UTC).replace(microsecond=0)
NAMES = service_dns_names(service="agent-sandbox-webhook", namespace="agent-sandbox-system")
POLICY = RenewalPolicy(
    ca_validity=timedelta(days=300),
    serving_validity=timedelta(days=30),
    min_remaining=timedelta(days=3),
    overlap=timedelta(hours=12),
)


def _create(now: datetime = T0) -> CertificateSet:
    created = apply_action(Action.CREATE, None, now=now, policy=POLICY, dns_names=NAMES)
    assert created is not None
    return created


def _step(current: CertificateSet, *, now: datetime) -> tuple[Action, CertificateSet]:
    action = decide(current, now=now, policy=POLICY, dns_names=NAMES)
    after = apply_action(action, current, now=now, policy=POLICY, dns_names=NAMES)
    return action, after or current


def _trusted(cert: x509.Certificate, bundle: Sequence[x509.Certificate]) -> bool:
    return any(signed_by(cert, ca) for ca in bundle)


# --- when to renew -------------------------------------------------------------------------


def test_nothing_stored_means_create() -> None:
    assert decide(None, now=T0, policy=POLICY, dns_names=NAMES) is Action.CREATE


def test_a_fresh_set_is_kept() -> None:
    assert decide(_create(), now=T0 + timedelta(days=1), policy=POLICY, dns_names=NAMES) is (
        Action.KEEP
    )


def test_serving_certificate_is_renewed_at_two_thirds_of_its_lifetime() -> None:
    certs = _create()
    two_thirds = T0 + timedelta(days=20)
    before = decide(certs, now=two_thirds - timedelta(minutes=1), policy=POLICY, dns_names=NAMES)
    at = decide(certs, now=two_thirds, policy=POLICY, dns_names=NAMES)
    assert (before, at) == (Action.KEEP, Action.ISSUE_SERVING)


def test_serving_certificate_is_renewed_when_little_time_is_left() -> None:
    long_fraction = replace(POLICY, renew_fraction=0.95)
    certs = _create()
    # 30 days lifetime, 3 days minimum: due at day 27 although 95% is day 28.5.
    assert (
        decide(certs, now=T0 + timedelta(days=27, minutes=1), policy=long_fraction, dns_names=NAMES)
        is Action.ISSUE_SERVING
    )
    assert (
        decide(certs, now=T0 + timedelta(days=26), policy=long_fraction, dns_names=NAMES)
        is Action.KEEP
    )


def test_serving_certificate_missing_a_service_name_is_reissued() -> None:
    certs = _create()
    other_names = service_dns_names(service="renamed", namespace="agent-sandbox-system")
    assert decide(certs, now=T0, policy=POLICY, dns_names=other_names) is Action.ISSUE_SERVING
    reissued = apply_action(
        Action.ISSUE_SERVING, certs, now=T0, policy=POLICY, dns_names=other_names
    )
    assert reissued is not None
    assert decide(reissued, now=T0, policy=POLICY, dns_names=other_names) is Action.KEEP


def test_serving_key_that_does_not_match_is_reissued() -> None:
    certs = _create()
    broken = replace(certs, serving_key=_create().serving_key)
    assert decide(broken, now=T0, policy=POLICY, dns_names=NAMES) is Action.ISSUE_SERVING


def test_expired_ca_or_unknown_ca_key_means_start_again() -> None:
    certs = _create()
    assert decide(certs, now=T0 + timedelta(days=301), policy=POLICY, dns_names=NAMES) is (
        Action.CREATE
    )
    foreign_key = replace(certs, ca_key=_create().ca_key)
    assert decide(foreign_key, now=T0, policy=POLICY, dns_names=NAMES) is Action.CREATE


def test_ca_is_rotated_at_two_thirds_of_its_lifetime() -> None:
    certs = _create(T0)
    # Keep the serving certificate fresh so the only reason left is the CA's age.
    day_199 = T0 + timedelta(days=199)
    fresh = apply_action(Action.ISSUE_SERVING, certs, now=day_199, policy=POLICY, dns_names=NAMES)
    assert fresh is not None
    assert decide(fresh, now=day_199, policy=POLICY, dns_names=NAMES) is Action.KEEP
    assert decide(fresh, now=T0 + timedelta(days=200), policy=POLICY, dns_names=NAMES) is (
        Action.ROTATE_CA
    )


# --- how bundles merge during a CA rotation -------------------------------------------------


def test_rotation_introduces_then_switches_then_prunes() -> None:
    now = T0 + timedelta(days=200)
    certs = apply_action(Action.ISSUE_SERVING, _create(), now=now, policy=POLICY, dns_names=NAMES)
    assert certs is not None
    old_ca = certs.current_ca

    action, rotated = _step(certs, now=now)
    assert action is Action.ROTATE_CA
    new_ca = rotated.current_ca
    assert fingerprint(new_ca) != fingerprint(old_ca)
    assert [fingerprint(c) for c in rotated.bundle] == [fingerprint(old_ca), fingerprint(new_ca)]
    assert rotated.serving == certs.serving, "nothing served changes while the new CA spreads"

    assert _step(rotated, now=now + POLICY.overlap - timedelta(minutes=1))[0] is Action.KEEP
    action, switched = _step(rotated, now=now + POLICY.overlap)
    assert action is Action.ISSUE_SERVING
    assert signed_by(switched.serving, new_ca)
    assert len(switched.bundle) == 2, "old CA stays while replicas may still serve its cert"

    later = now + POLICY.overlap * 2
    assert _step(switched, now=later - timedelta(minutes=1))[0] is Action.KEEP
    action, pruned = _step(switched, now=later)
    assert action is Action.PRUNE_BUNDLE
    assert [fingerprint(c) for c in pruned.bundle] == [fingerprint(new_ca)]
    assert _step(pruned, now=later)[0] is Action.KEEP


def test_merge_drops_expired_and_duplicate_cas_and_orders_oldest_first() -> None:
    old, _ = generate_ca("old", valid_for=timedelta(days=10), now=T0)
    certs = _create(T0 + timedelta(days=5))
    current = certs.current_ca
    merged = merge_bundle(
        [current, old, current],
        current_ca=current,
        serving=certs.serving,
        now=T0 + timedelta(days=5),
        overlap=POLICY.overlap,
    )
    assert merged == (old, current), "within the overlap the older CA is kept, oldest first"
    after_expiry = merge_bundle(
        [old, current],
        current_ca=current,
        serving=certs.serving,
        now=T0 + timedelta(days=11),
        overlap=POLICY.overlap,
    )
    assert after_expiry == (current,)


def test_merge_always_keeps_the_issuer_of_what_is_served() -> None:
    certs = _create()
    newer, _ = generate_ca("newer", valid_for=timedelta(days=300), now=T0 + timedelta(days=1))
    merged = merge_bundle(
        [certs.current_ca],
        current_ca=newer,
        serving=certs.serving,
        now=T0 + timedelta(days=10),
        overlap=POLICY.overlap,
    )
    assert merged == (certs.current_ca, newer)


def test_a_year_of_simulated_operation_never_serves_an_untrusted_certificate() -> None:
    """Every write must be safe for a replica or API server one step behind it."""
    certs = _create()
    now = T0
    actions: list[Action] = []
    trusted_since = {fingerprint(certs.current_ca): T0}
    while now < T0 + timedelta(days=600):
        now += timedelta(hours=6)
        action, after = _step(certs, now=now)
        if action is not Action.KEEP:
            actions.append(action)
            assert action is not Action.CREATE, f"no restart from scratch, at {now}"
            # A replica that has not picked up the write still serves certs.serving.
            assert _trusted(certs.serving, after.bundle), f"{action} at {now}"
            # The API server may still hold the previous caBundle when a replica serves after.
            assert _trusted(after.serving, certs.bundle), f"{action} at {now}"
            for ca in after.bundle:
                trusted_since.setdefault(fingerprint(ca), now)
            if after.serving != certs.serving:
                issuer = next(ca for ca in after.bundle if signed_by(after.serving, ca))
                # Serving from a CA that every API server and replica has trusted for a while.
                assert now - trusted_since[fingerprint(issuer)] >= POLICY.overlap
        assert after.serving.not_valid_after_utc > now + POLICY.min_remaining
        assert after.current_ca.not_valid_after_utc > now
        assert len(after.bundle) <= 2
        certs = after
    assert actions.count(Action.ROTATE_CA) == 2
    assert actions.count(Action.PRUNE_BUNDLE) >= 2
    assert actions.count(Action.ISSUE_SERVING) >= 600 // 20


# --- Secret encoding and caBundle patches ----------------------------------------------------


def test_secret_data_round_trips_and_incomplete_secrets_are_recreated() -> None:
    certs = _create()
    data = secret_data(certs)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    parsed = parse_secret(data)
    assert parsed is not None
    assert parsed.serving == certs.serving
    assert parsed.bundle == certs.bundle
    assert parse_secret({k: v for k, v in data.items() if k != "ca.key"}) is None
    assert parse_secret({**data, "tls.crt": b"junk"}) is None


def _apply_json_patch(document: dict[str, Any], operations: Sequence[Mapping[str, Any]]) -> None:
    for op in operations:
        *parents, leaf = op["path"].strip("/").split("/")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "test":
            if target[leaf] != op["value"]:
                raise ConflictError("JSON patch test failed")
        else:
            target[leaf] = op["value"]


def test_ca_bundle_patch_sets_every_differing_entry_and_guards_the_index() -> None:
    bundle = b"-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n"
    config = {
        "webhooks": [
            {"name": "a.agentsandbox.io", "clientConfig": {}},
            {
                "name": "b.agentsandbox.io",
                "clientConfig": {"caBundle": base64.b64encode(bundle).decode()},
            },
            {"name": "c.agentsandbox.io", "clientConfig": {"caBundle": "b2xk"}},
        ]
    }
    entries = [
        ("a.agentsandbox.io", b""),
        ("b.agentsandbox.io", bundle),
        ("c.agentsandbox.io", b"old"),
    ]
    operations = ca_bundle_patch(entries, bundle_pem=bundle)
    assert [op["op"] for op in operations] == ["test", "add", "test", "add"]
    _apply_json_patch(config, operations)
    assert {base64.b64decode(w["clientConfig"]["caBundle"]) for w in config["webhooks"]} == {bundle}
    assert ca_bundle_patch([(n, bundle) for n, _ in entries], bundle_pem=bundle) == []
    reordered = {"webhooks": list(reversed(copy.deepcopy(config["webhooks"])))}
    with pytest.raises(ConflictError):
        _apply_json_patch(reordered, operations)


# --- the manager against a boundary fake -----------------------------------------------------


class FakeKube:
    """Boundary fake of webhook.cluster.kube.KubeApi: no API server runs in this test."""

    def __init__(self, *, configs: Sequence[str] = ("agent-sandbox-webhook",)) -> None:
        self.lock = threading.Lock()
        self.secret: StoredSecret | None = None
        self.version = 0
        self.writes: list[str] = []
        self.conflicts = 0
        self.read_barrier: threading.Barrier | None = None
        self.webhooks: dict[tuple[str, str], dict[str, Any]] = {
            (kind, name): {
                "webhooks": [
                    {"name": f"{entry}.agentsandbox.io", "clientConfig": {}}
                    for entry in ("mutate.pods", "mutate.pods-warn")
                ]
            }
            for kind in ("mutating", "validating")
            for name in configs
        }
        self.patches: list[tuple[str, str]] = []

    def read_secret(self, *, namespace: str, name: str) -> StoredSecret | None:
        with self.lock:
            snapshot = self.secret
        barrier = self.read_barrier
        # Make the two racing replicas read the same version, once; re-reads go through.
        if barrier is not None and barrier.wait(timeout=5) == 0:
            self.read_barrier = None
        return snapshot

    def _store(self, *, namespace: str, name: str, data: Mapping[str, bytes]) -> StoredSecret:
        self.version += 1
        self.secret = StoredSecret(name, namespace, dict(data), str(self.version))
        return self.secret

    def create_secret(
        self, *, namespace: str, name: str, data: Mapping[str, bytes], labels: Mapping[str, str]
    ) -> StoredSecret:
        with self.lock:
            if self.secret is not None:
                self.conflicts += 1
                raise ConflictError("already exists")
            self.writes.append("create")
            return self._store(namespace=namespace, name=name, data=data)

    def replace_secret(
        self,
        *,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        labels: Mapping[str, str],
        resource_version: str,
    ) -> StoredSecret:
        with self.lock:
            if self.secret is None or self.secret.resource_version != resource_version:
                self.conflicts += 1
                raise ConflictError("stale resourceVersion")
            self.writes.append("replace")
            return self._store(namespace=namespace, name=name, data=data)

    def read_webhooks(self, *, kind: WebhookKind, name: str) -> list[WebhookEntry] | None:
        config = self.webhooks.get((kind, name))
        if config is None:
            return None
        return [
            WebhookEntry(w["name"], base64.b64decode(w["clientConfig"].get("caBundle", "")))
            for w in config["webhooks"]
        ]

    def patch_webhooks(
        self, *, kind: WebhookKind, name: str, operations: Sequence[Mapping[str, Any]]
    ) -> None:
        self.patches.append((kind, name))
        _apply_json_patch(self.webhooks[(kind, name)], operations)

    def bundles(self) -> set[bytes]:
        return {
            base64.b64decode(w["clientConfig"]["caBundle"])
            for config in self.webhooks.values()
            for w in config["webhooks"]
        }


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _settings(cert_dir: Path, **overrides: Any) -> CertManagerSettings:
    return CertManagerSettings(
        mode="secret",
        cert_dir=cert_dir,
        namespace="agent-sandbox-system",
        policy=POLICY,
        **overrides,
    )


async def test_first_pass_creates_the_secret_writes_files_and_injects_every_entry(
    tmp_path: Path,
) -> None:
    kube = FakeKube()
    manager = SecretCertificateManager(
        api=kube, settings=_settings(tmp_path), clock=Clock(T0 + timedelta(minutes=10))
    )
    certs = await manager.reconcile()
    assert kube.writes == ["create"]
    assert kube.secret is not None
    assert kube.secret.data["tls.crt"] == (tmp_path / "tls.crt").read_bytes()
    assert kube.bundles() == {kube.secret.data["ca.crt"]}
    assert sorted(kube.patches) == [
        ("mutating", "agent-sandbox-webhook"),
        ("validating", "agent-sandbox-webhook"),
    ]
    tls = ServingTLS(cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")
    assert tls.serial == certs.serving.serial_number

    kube.patches.clear()
    again = await manager.reconcile()
    assert kube.writes == ["create"], "a fresh Secret is not rewritten"
    assert kube.patches == [], "caBundles already right are not patched"
    assert again.serving == certs.serving


async def test_renewal_replaces_the_secret_and_the_files_reload(tmp_path: Path) -> None:
    kube = FakeKube()
    clock = Clock(T0)
    manager = SecretCertificateManager(api=kube, settings=_settings(tmp_path), clock=clock)
    first = await manager.reconcile()
    tls = ServingTLS(cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")
    clock.now = T0 + timedelta(days=21)
    second = await manager.reconcile()
    assert kube.writes == ["create", "replace"]
    assert second.serving.serial_number != first.serving.serial_number
    assert tls.reload() is True
    assert tls.serial == second.serving.serial_number


async def test_racing_replicas_converge_on_the_secret_created_first(tmp_path: Path) -> None:
    kube = FakeKube()
    kube.read_barrier = threading.Barrier(2)
    clock = Clock(datetime.now(UTC))
    managers = [
        SecretCertificateManager(api=kube, settings=_settings(tmp_path / f"r{i}"), clock=clock)
        for i in range(2)
    ]
    results = await asyncio.gather(*(m.reconcile() for m in managers))
    assert kube.writes == ["create"], "exactly one create wins"
    assert kube.conflicts == 1, "the loser saw 409 Conflict and adopted the winner's Secret"
    assert results[0].serving == results[1].serving
    assert (tmp_path / "r0" / "tls.crt").read_bytes() == (tmp_path / "r1" / "tls.crt").read_bytes()


async def test_racing_renewals_keep_one_certificate(tmp_path: Path) -> None:
    kube = FakeKube()
    clock = Clock(T0)
    managers = [
        SecretCertificateManager(api=kube, settings=_settings(tmp_path / f"r{i}"), clock=clock)
        for i in range(2)
    ]
    await managers[0].reconcile()
    await managers[1].reconcile()
    clock.now = T0 + timedelta(days=21)
    kube.read_barrier = threading.Barrier(2)
    results = await asyncio.gather(*(m.reconcile() for m in managers))
    assert kube.writes == ["create", "replace"], "the stale resourceVersion lost"
    assert kube.conflicts == 1
    assert results[0].serving == results[1].serving
    stored = decode_certificate(kube.secret.data["tls.crt"]) if kube.secret else None
    assert stored == results[0].serving


async def test_missing_webhook_configuration_is_not_fatal(tmp_path: Path) -> None:
    kube = FakeKube(configs=())
    manager = SecretCertificateManager(api=kube, settings=_settings(tmp_path), clock=Clock(T0))
    await manager.reconcile()
    assert kube.writes == ["create"]
    assert (tmp_path / "tls.key").exists()


async def test_background_loop_adopts_another_replicas_renewal_and_stops(tmp_path: Path) -> None:
    kube = FakeKube()
    clock = Clock(T0)
    other = SecretCertificateManager(api=kube, settings=_settings(tmp_path / "other"), clock=clock)
    await other.reconcile()
    ours = SecretCertificateManager(
        api=kube, settings=_settings(tmp_path / "ours", resync_seconds=0.02), clock=clock
    )
    context = secret_manager_ctx(ours)
    from aiohttp import web

    generator = context(web.Application())
    await generator.__anext__()
    for _ in range(200):
        if (tmp_path / "ours" / "tls.crt").exists():
            break
        await asyncio.sleep(0.02)
    assert kube.secret is not None
    assert (tmp_path / "ours" / "tls.crt").read_bytes() == kube.secret.data["tls.crt"]
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()
