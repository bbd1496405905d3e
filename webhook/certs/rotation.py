"""Pure decisions for self-managed certificates: when to renew, rotate, and what to trust.

Owns: the value a certificate Secret holds (:class:`CertificateSet`), parsing it from and
encoding it to Secret data, and the decisions the manager acts on: renew the serving
certificate (at a fraction of its lifetime, or when little time is left, or when its SANs or
key are wrong), rotate the CA, and which CAs the ``caBundle`` keeps during a rotation. Also
the JSON patch that puts a bundle into webhook configurations.

Deliberately does not own: I/O of any kind (``webhook.certs.manager`` reads and writes Secrets
through ``webhook.cluster.kube``), or the clock (every function takes ``now``). Key generation
happens in :func:`apply_action` through ``webhook.certs.pki``; everything else is deterministic.

Rotation, step by step, so that the API server always trusts what every replica serves:

1. ROTATE_CA: a new CA joins the bundle next to the old one; the serving certificate is
   unchanged (still signed by the old CA), so nothing served changes yet.
2. After ``overlap`` (long enough for every replica's poll, the kubelet's Secret sync and the
   API server's caBundle pick-up), ISSUE_SERVING signs a new serving certificate with the new CA.
3. After another ``overlap`` (every replica now serves the new certificate), PRUNE_BUNDLE drops
   the old CA. Expired CAs are dropped at any time.

The CA's issue time and the serving certificate's issue time are read from the certificates
themselves (``notBefore`` plus the back-dating skew), so no extra state is stored.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.certs.pki import (
    CLOCK_SKEW,
    CertificateError,
    decode_certificates,
    decode_private_key,
    encode_certificate,
    encode_certificates,
    encode_private_key,
    generate_ca,
    issue_serving_certificate,
    key_matches,
)

CA_COMMON_NAME = "agent-sandbox-webhook CA"
# Secret keys. ca.crt is the bundle the API server trusts (one or two CAs); ca.key signs.
CA_BUNDLE_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"


class Action(enum.Enum):
    KEEP = "keep"
    CREATE = "create"
    ROTATE_CA = "rotate-ca"
    ISSUE_SERVING = "issue-serving"
    PRUNE_BUNDLE = "prune-bundle"


@dataclass(frozen=True)
class RenewalPolicy:
    ca_validity: timedelta = timedelta(days=5 * 365)
    serving_validity: timedelta = timedelta(days=30)
    # Renew the serving certificate at 2/3 of its lifetime, or when less than min_remaining is
    # left, whichever comes first: a week of slack survives a long outage of the manager.
    renew_fraction: float = 2 / 3
    min_remaining: timedelta = timedelta(days=7)
    ca_rotate_fraction: float = 2 / 3
    # How long both CAs stay trusted around each rotation step. Must cover the manager's resync
    # interval, the kubelet's Secret sync (about a minute by default) and TLS file polling.
    overlap: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1 or not 0 < self.ca_rotate_fraction < 1:
            raise ValueError("renewal fractions must be between 0 and 1")
        if self.overlap * 3 > self.serving_validity * (1 - self.renew_fraction):
            # Otherwise a serving certificate could come due during a CA rotation.
            raise ValueError("overlap is too long for the serving certificate's lifetime")


@dataclass(frozen=True)
class CertificateSet:
    """What the Secret holds: the trusted bundle, the signing CA key, the serving pair."""

    bundle: tuple[x509.Certificate, ...]
    ca_key: ec.EllipticCurvePrivateKey
    serving: x509.Certificate
    serving_key: ec.EllipticCurvePrivateKey

    @property
    def current_ca(self) -> x509.Certificate:
        for ca in self.bundle:
            if key_matches(ca, self.ca_key):
                return ca
        raise CertificateError("no CA in the bundle matches the CA key")


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def issued_at(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc + CLOCK_SKEW


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def due(
    cert: x509.Certificate, *, now: datetime, fraction: float, min_remaining: timedelta
) -> bool:
    """True once ``fraction`` of the lifetime has passed or less than ``min_remaining`` is left."""
    start = issued_at(cert)
    lifetime = cert.not_valid_after_utc - start
    return now >= start + lifetime * fraction or cert.not_valid_after_utc - now < min_remaining


def covers(cert: x509.Certificate, dns_names: Sequence[str]) -> bool:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(dns_names) <= set(sans.get_values_for_type(x509.DNSName))


def merge_bundle(
    bundle: Sequence[x509.Certificate],
    *,
    current_ca: x509.Certificate,
    serving: x509.Certificate,
    now: datetime,
    overlap: timedelta,
) -> tuple[x509.Certificate, ...]:
    """The CAs to trust: the signing CA, the serving certificate's issuer, and, for ``overlap``
    after the serving certificate was issued, any older CA (replicas may still serve a
    certificate it signed). Never an expired CA. Oldest first, no duplicates."""
    issuers = [ca for ca in bundle if signed_by(serving, ca)]
    grace = now < issued_at(serving) + overlap
    keep: dict[bytes, x509.Certificate] = {}
    for ca in [*bundle, current_ca]:
        if ca.not_valid_after_utc <= now:
            continue
        if fingerprint(ca) == fingerprint(current_ca) or ca in issuers or grace:
            keep[fingerprint(ca)] = ca
    return tuple(sorted(keep.values(), key=lambda ca: ca.not_valid_before_utc))


def decide(
    current: CertificateSet | None,
    *,
    now: datetime,
    policy: RenewalPolicy,
    dns_names: Sequence[str],
) -> Action:
    """The one next step towards a fresh, trusted certificate set (KEEP when there is none)."""
    if current is None:
        return Action.CREATE
    try:
        ca = current.current_ca
    except CertificateError:
        return Action.CREATE
    if ca.not_valid_after_utc <= now:
        return Action.CREATE
    serving = current.serving
    if not key_matches(serving, current.serving_key) or serving.not_valid_after_utc <= now:
        return Action.ISSUE_SERVING
    if signed_by(serving, ca):
        serving_due = due(
            serving, now=now, fraction=policy.renew_fraction, min_remaining=policy.min_remaining
        )
        if serving_due or not covers(serving, dns_names):
            return Action.ISSUE_SERVING
        # Rotate while the old CA still has at least two serving lifetimes left to overlap.
        if due(
            ca,
            now=now,
            fraction=policy.ca_rotate_fraction,
            min_remaining=policy.serving_validity * 2,
        ):
            return Action.ROTATE_CA
    elif now >= issued_at(ca) + policy.overlap or not covers(serving, dns_names):
        # Mid-rotation: the new CA has been trusted long enough to start serving from it.
        return Action.ISSUE_SERVING
    merged = merge_bundle(
        current.bundle, current_ca=ca, serving=serving, now=now, overlap=policy.overlap
    )
    if [fingerprint(c) for c in merged] != [fingerprint(c) for c in current.bundle]:
        return Action.PRUNE_BUNDLE
    return Action.KEEP


def apply_action(
    action: Action,
    current: CertificateSet | None,
    *,
    now: datetime,
    policy: RenewalPolicy,
    dns_names: Sequence[str],
) -> CertificateSet | None:
    """The set after ``action``; None for KEEP. Generates keys, otherwise deterministic."""
    if action is Action.KEEP:
        return None

    def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[
            x509.Certificate, ec.EllipticCurvePrivateKey]:
        return issue_serving_certificate(ca, ca_key, dns_names=dns_names, ip_addresses=(),
                                         valid_for=policy.serving_validity, now=now)

    if action is Action.CREATE or current is None:
        ca, ca_key = generate_ca(CA_COMMON_NAME, valid_for=policy.ca_validity, now=now)
        serving, serving_key = issue(ca, ca_key)
        return CertificateSet((ca,), ca_key, serving, serving_key)
    ca, ca_key = current.current_ca, current.ca_key
    serving, serving_key = current.serving, current.serving_key
    if action is Action.ROTATE_CA:
        ca, ca_key = generate_ca(CA_COMMON_NAME, valid_for=policy.ca_validity, now=now)
    elif action is Action.ISSUE_SERVING:
        serving, serving_key = issue(ca, ca_key)
    bundle = merge_bundle(
        (*current.bundle, ca), current_ca=ca, serving=serving, now=now, overlap=policy.overlap
    )
    return CertificateSet(bundle, ca_key, serving, serving_key)


def parse_secret(data: Mapping[str, bytes]) -> CertificateSet | None:
    """The set stored in a Secret, or None if a key is missing or unusable (then: CREATE)."""
    try:
        return CertificateSet(
            bundle=tuple(decode_certificates(data[CA_BUNDLE_KEY])),
            ca_key=decode_private_key(data[CA_KEY_KEY]),
            serving=decode_certificates(data[CERT_KEY])[0],
            serving_key=decode_private_key(data[KEY_KEY]),
        )
    except (KeyError, CertificateError):
        return None


def secret_data(certs: CertificateSet) -> dict[str, bytes]:
    return {
        CA_BUNDLE_KEY: encode_certificates(certs.bundle),
        CA_KEY_KEY: encode_private_key(certs.ca_key),
        CERT_KEY: encode_certificate(certs.serving),
        KEY_KEY: encode_private_key(certs.serving_key),
    }


def ca_bundle_patch(
    entries: Sequence[tuple[str, bytes]], *, bundle_pem: bytes
) -> list[dict[str, Any]]:
    """JSON patch setting ``caBundle`` on every webhook entry that differs; [] when none does.

    Each write is guarded by a ``test`` of the entry's name at that index, so a configuration
    re-ordered between our read and our patch is refused rather than patched at the wrong entry.
    """
    encoded = base64.b64encode(bundle_pem).decode("ascii")
    operations: list[dict[str, Any]] = []
    for index, (name, current) in enumerate(entries):
        if current == bundle_pem:
            continue
        operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": name})
        operations.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        )
    return operations
