"""``doctor``'s look at our own webhook configurations: present, trusted, answering.

Owns three judgements about the Mutating/ValidatingWebhookConfiguration pair: both exist;
every entry's ``caBundle`` holds a CA that signed the serving certificate stored in the
certificate Secret (and that certificate names the Service and has not expired), so the
API server will trust what the replicas serve; and the Service the entries call has ready
endpoints. Pure: everything comes from the ``Snapshot``, ``now`` included.

It does not connect to the Service (that would need a port-forward or exec): what the
replicas serve is the Secret's certificate, which they reload within seconds.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509

from webhook.certs.pki import CertificateError, decode_certificate, decode_certificates
from webhook.certs.rotation import covers, signed_by
from webhook.tools.doctor.findings import (
    Finding,
    failed,
    name_of,
    passed,
    ready_endpoints,
    unreadable,
)
from webhook.tools.doctor.snapshot import Snapshot, Unreadable

INSTALL = "kubectl apply -k manifests/"


def check_webhook_configurations(snapshot: Snapshot) -> list[Finding]:
    name = snapshot.settings.configuration
    mutating: dict[str, Any] | Unreadable | None
    if isinstance(snapshot.mutating_webhooks, Unreadable):
        mutating = snapshot.mutating_webhooks
    else:
        mutating = next((c for c in snapshot.mutating_webhooks if name_of(c) == name), None)
    serving = _serving_certificate(snapshot)
    findings = [_configuration(snapshot, f"MutatingWebhookConfiguration {name}", mutating,
                               serving),
                _configuration(snapshot, f"ValidatingWebhookConfiguration {name}",
                               snapshot.validating_webhook, serving)]
    services = sorted({service for config in (mutating, snapshot.validating_webhook)
                       if isinstance(config, dict) for service in _services(config)})
    findings.extend(_endpoints(snapshot, services))
    return findings


def _configuration(snapshot: Snapshot, check: str, config: dict[str, Any] | Unreadable | None,
                   serving: x509.Certificate | str) -> Finding:
    if isinstance(config, Unreadable):
        return unreadable(check, config)
    if config is None:
        return failed(check, "not found", INSTALL)
    entries = [w for w in config.get("webhooks") or [] if isinstance(w, dict)]
    if not entries:
        return failed(check, "has no webhooks", INSTALL)
    if isinstance(serving, str):
        return failed(check, f"cannot verify its caBundle: {serving}",
                      "start the webhook once (it creates the Secret), or check the "
                      "cert-manager Certificate")
    untrusted = [str(w.get("name")) for w in entries if not _trusts(w, serving)]
    if untrusted:
        return failed(check, f"caBundle of {', '.join(untrusted)} does not verify the serving "
                      f"certificate in Secret {snapshot.certificate_secret}",
                      "wait a minute for the webhook to inject it (or cert-manager's "
                      "cainjector); if it stays, kubectl -n "
                      f"{snapshot.settings.namespace} logs deploy/agent-sandbox-webhook")
    problems = []
    if serving.not_valid_after_utc <= snapshot.now:
        problems.append(f"the serving certificate expired at {serving.not_valid_after_utc}")
    for namespace, service in sorted({s for w in entries for s in _services_of(w)}):
        if not covers(serving, [f"{service}.{namespace}.svc"]):
            problems.append(f"the serving certificate does not name {service}.{namespace}.svc")
    if problems:
        return failed(check, "; ".join(problems), "restart the webhook Deployment to renew it")
    days = (serving.not_valid_after_utc - snapshot.now).days
    count = f"{len(entries)} webhook{'s' if len(entries) != 1 else ''}"
    return passed(check, f"{count}; caBundle verifies the serving certificate "
                  f"(Secret {snapshot.certificate_secret}, {days} days left)")


def _endpoints(snapshot: Snapshot, services: list[tuple[str, str]]) -> list[Finding]:
    check = "webhook endpoints"
    if isinstance(snapshot.endpoint_slices, Unreadable):
        return [unreadable(check, snapshot.endpoint_slices)]
    findings = []
    for namespace, service in services:
        ready = ready_endpoints(snapshot.endpoint_slices, namespace=namespace, service=service)
        if ready:
            findings.append(passed(check, f"Service {namespace}/{service}: {ready} ready"))
        else:
            findings.append(failed(
                check, f"Service {namespace}/{service} has no ready endpoints: with "
                "failurePolicy Fail, agent pods cannot be created",
                f"kubectl -n {namespace} rollout status deployment/agent-sandbox-webhook; "
                f"kubectl -n {namespace} get pods,events"))
    return findings


def _serving_certificate(snapshot: Snapshot) -> x509.Certificate | str:
    found = snapshot.certificates
    tried = ", ".join(snapshot.settings.cert_secrets)
    if isinstance(found, Unreadable):
        return f"could not read the certificate Secret ({found.reason})"
    if found is None or "tls.crt" not in found:
        return f"no certificate Secret in {snapshot.settings.namespace} (tried {tried})"
    try:
        return decode_certificate(found["tls.crt"])
    except (CertificateError, ValueError) as exc:
        return f"tls.crt in Secret {snapshot.certificate_secret} does not parse: {exc}"


def _trusts(webhook: dict[str, Any], serving: x509.Certificate) -> bool:
    encoded = (webhook.get("clientConfig") or {}).get("caBundle") or ""
    try:
        bundle = decode_certificates(base64.b64decode(encoded, validate=True))
    except (binascii.Error, CertificateError, ValueError):
        return False
    return any(signed_by(serving, ca) for ca in bundle)


def _services_of(webhook: dict[str, Any]) -> list[tuple[str, str]]:
    service = (webhook.get("clientConfig") or {}).get("service") or {}
    if not service.get("name"):
        return []  # a url: client config (out-of-cluster development) has no endpoints
    return [(str(service.get("namespace", "")), str(service["name"]))]


def _services(config: dict[str, Any]) -> list[tuple[str, str]]:
    return [s for w in config.get("webhooks") or [] if isinstance(w, dict)
            for s in _services_of(w)]
