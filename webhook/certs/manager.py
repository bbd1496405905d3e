"""Self-managed certificates in a cluster: the Secret, the local files, the caBundles.

Owns: the ``--cert-*`` settings, and :class:`SecretCertificateManager`, the background loop
that (1) makes sure the Secret holds a fresh CA and serving pair, creating it if missing,
(2) writes the serving pair into a local directory (an emptyDir: the root filesystem is
read-only) that ``webhook.server.tls.ServingTLS`` watches, and (3) puts the CA bundle into every
webhook entry of the named Mutating/ValidatingWebhookConfigurations.

Deliberately does not own: the decisions (``webhook.certs.rotation``, pure and unit-tested), the
API calls (``webhook.cluster.kube``), or the TLS context. It never runs on the admission path.

Why the CA key lives in the same Secret as the serving pair: every replica must be able to
renew, so every replica's service account needs the CA key anyway; a second Secret would add
no privilege separation, and one object means one resourceVersion, so a renewal updates CA
bundle and serving pair atomically with compare-and-swap. The CA only signs this webhook's
serving certificate and is trusted only through these configurations' ``caBundle``.

Races between replicas: a create that gets 409 Conflict means another replica won; we re-read
and adopt its Secret. Updates carry the resourceVersion we read; a 409 means re-read, decide
again, and retry, so every replica converges on whatever the API server stored first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

from webhook.certs.pki import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    encode_certificate,
    encode_certificates,
    encode_private_key,
    service_dns_names,
    write_pair_atomically,
)
from webhook.certs.rotation import (
    CertificateSet,
    RenewalPolicy,
    apply_action,
    ca_bundle_patch,
    decide,
    parse_secret,
    secret_data,
)
from webhook.cluster.kube import ConflictError, KubeApi, KubeError, WebhookKind
from webhook.config.flags import add_env_argument

logger = logging.getLogger(__name__)

CertMode = Literal["files", "self-signed", "secret"]
DEFAULT_SECRET = "agent-sandbox-webhook-tls"
DEFAULT_SERVICE = "agent-sandbox-webhook"
DEFAULT_NAMESPACE = "agent-sandbox-system"
DEFAULT_CERT_DIR = Path("/run/agent-sandbox/certs")
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MAX_CONFLICT_RETRIES = 5
SECRET_LABELS = {"app.kubernetes.io/name": "agent-sandbox-webhook"}
WEBHOOK_KINDS: tuple[WebhookKind, ...] = ("mutating", "validating")


@dataclass(frozen=True)
class CertManagerSettings:
    mode: CertMode | None
    secret_name: str = DEFAULT_SECRET
    cert_dir: Path = DEFAULT_CERT_DIR
    service: str = DEFAULT_SERVICE
    namespace: str = DEFAULT_NAMESPACE
    webhook_config_names: tuple[str, ...] = (DEFAULT_SERVICE,)
    resync_seconds: float = 60.0
    policy: RenewalPolicy = field(default_factory=RenewalPolicy)

    @property
    def dns_names(self) -> list[str]:
        return service_dns_names(service=self.service, namespace=self.namespace)

    @property
    def cert_path(self) -> Path:
        return self.cert_dir / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.cert_dir / KEY_FILE


def default_namespace() -> str:
    """The pod's namespace: the service account's namespace file, then ``$POD_NAMESPACE``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE)


def register_cert_manager_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("certificates")
    add_env_argument(
        group, "--cert-mode", choices=["files", "self-signed", "secret"],
        shown_default="files if --tls-cert is given, otherwise self-signed; the Deployment in "
        "manifests/ sets secret",
        help="files: --tls-cert/--tls-key (cert-manager, static); self-signed: a throw-away dev "
        "CA; secret: self-managed in a Secret, as the manifests install it")
    add_env_argument(group, "--cert-secret", default=DEFAULT_SECRET,
                     help="Secret holding the CA and serving pair (secret mode)")
    add_env_argument(group, "--cert-dir", kind=Path, default=str(DEFAULT_CERT_DIR),
                     help="writable directory for the serving pair (secret mode)")
    add_env_argument(group, "--service", default=DEFAULT_SERVICE,
                     help="the webhook's Service name, the serving certificate's DNS name "
                     "(secret mode)")
    add_env_argument(group, "--namespace", shown_default="the pod's namespace",
                     help="the webhook's namespace (secret mode)")
    add_env_argument(group, "--webhook-config-names", default=DEFAULT_SERVICE,
                     help="comma-separated Mutating/ValidatingWebhookConfiguration names to "
                     "inject the CA bundle into (secret mode)")


def cert_manager_settings(args: argparse.Namespace) -> CertManagerSettings:
    names = tuple(name.strip() for name in str(args.webhook_config_names).split(",") if name)
    return CertManagerSettings(
        mode=cast(CertMode | None, args.cert_mode),
        secret_name=str(args.cert_secret),
        cert_dir=Path(args.cert_dir),
        service=str(args.service),
        namespace=str(args.namespace or default_namespace()),
        webhook_config_names=names,
    )


def resolve_mode(settings: CertManagerSettings, *, tls_cert_given: bool) -> CertMode:
    if settings.mode is not None:
        return settings.mode
    return "files" if tls_cert_given else "self-signed"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SecretCertificateManager:
    """Keeps the Secret, the local serving files and the caBundles in step."""

    def __init__(
        self,
        *,
        api: KubeApi,
        settings: CertManagerSettings,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._api = api
        self._settings = settings
        self._clock = clock

    async def reconcile(self) -> CertificateSet:
        """One pass. Returns the set now stored (ours, or the one another replica wrote)."""
        settings = self._settings
        for _attempt in range(MAX_CONFLICT_RETRIES):
            stored = await asyncio.to_thread(
                self._api.read_secret, namespace=settings.namespace, name=settings.secret_name
            )
            current = parse_secret(stored.data) if stored is not None else None
            now = self._clock()
            action = decide(current, now=now, policy=settings.policy, dns_names=settings.dns_names)
            desired = apply_action(
                action, current, now=now, policy=settings.policy, dns_names=settings.dns_names
            )
            if desired is None:
                assert current is not None  # decide() returns KEEP only for a parsed set
                desired = current
            else:
                try:
                    version = stored.resource_version if stored is not None else None
                    await self._store(desired, resource_version=version)
                except ConflictError:
                    logger.info("certificate Secret changed concurrently; re-reading to adopt it")
                    continue
                logger.info(
                    "certificate Secret updated",
                    extra={"action": action.value, "serial": f"{desired.serving.serial_number:x}"},
                )
            self._publish(desired)
            await self._inject_bundle(encode_certificates(desired.bundle))
            return desired
        raise KubeError(f"gave up after {MAX_CONFLICT_RETRIES} conflicting writes")

    async def _store(self, certs: CertificateSet, *, resource_version: str | None) -> None:
        settings = self._settings
        data = secret_data(certs)
        if resource_version is None:
            await asyncio.to_thread(
                self._api.create_secret,
                namespace=settings.namespace,
                name=settings.secret_name,
                data=data,
                labels=SECRET_LABELS,
            )
        else:
            await asyncio.to_thread(
                self._api.replace_secret,
                namespace=settings.namespace,
                name=settings.secret_name,
                data=data,
                labels=SECRET_LABELS,
                resource_version=resource_version,
            )

    def _publish(self, certs: CertificateSet) -> None:
        """Write the serving pair for ServingTLS; untouched files mean no reload."""
        write_pair_atomically(
            self._settings.cert_dir,
            files={
                CERT_FILE: encode_certificate(certs.serving),
                KEY_FILE: encode_private_key(certs.serving_key),
                CA_FILE: encode_certificates(certs.bundle),
            },
        )

    async def _inject_bundle(self, bundle_pem: bytes) -> None:
        for name in self._settings.webhook_config_names:
            for kind in WEBHOOK_KINDS:
                try:
                    await self._inject_one(kind=kind, name=name, bundle_pem=bundle_pem)
                except KubeError as exc:
                    # Not fatal for this pass: the next resync retries. Until then the API
                    # server fails closed on an untrusted certificate, which is the safe side.
                    logger.error("caBundle injection failed: %s", exc)

    async def _inject_one(self, *, kind: WebhookKind, name: str, bundle_pem: bytes) -> None:
        entries = await asyncio.to_thread(self._api.read_webhooks, kind=kind, name=name)
        if entries is None:
            logger.warning("%s webhook configuration %s not found; nothing to inject", kind, name)
            return
        operations = ca_bundle_patch(
            [(entry.name, entry.ca_bundle) for entry in entries], bundle_pem=bundle_pem
        )
        if operations:
            await asyncio.to_thread(
                self._api.patch_webhooks, kind=kind, name=name, operations=operations
            )
            logger.info("caBundle injected into %s webhook configuration %s", kind, name)

    async def run(self, *, stop: asyncio.Event) -> None:
        """Reconcile every ``resync_seconds`` until ``stop``; back off quickly on errors."""
        resync = self._settings.resync_seconds
        failures = 0
        while not stop.is_set():
            # Retry soon after a failure, backing off exponentially up to the resync interval.
            delay = resync if failures == 0 else min(resync, 5.0 * 2 ** (failures - 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return
            try:
                await self.reconcile()
                failures = 0
            except (KubeError, OSError) as exc:
                failures += 1
                logger.error("certificate reconcile failed (%d in a row): %s", failures, exc)
