"""Well-known shared-storage and paste endpoints, and the load warning for suffixes that cover them.

Owns the list of names where anyone's data sits under one provider name (a bucket, a blob
container, a paste, a tunnel or a request bin) and ``suffix_warnings``, which says which
``*.suffix`` entries of a registry approve one of them. Approving ``*.googleapis.com`` for a
Google API also approves ``attacker-bucket.storage.googleapis.com``: the attacker's bucket, a
perfect exfiltration target. It is a warning, not an error: an operator may mean it, and an
exact entry (or a deny-list item) for the name narrows it. It decides nothing about objects.

Each probe is a name the provider really serves, with a placeholder where the customer's
bucket, account or tunnel name goes (``any-bucket``): a suffix covering the probe covers every
customer's name in that position.
"""

from __future__ import annotations

from typing import Protocol

from webhook.egress.hosts import Host

SHARED_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("storage.googleapis.com", "Google Cloud Storage"),
    ("any-bucket.storage.googleapis.com", "Google Cloud Storage (virtual-hosted buckets)"),
    ("firebasestorage.googleapis.com", "Firebase Storage"),
    ("any-app.firebaseio.com", "Firebase Realtime Database"),
    ("any-app.appspot.com", "Google App Engine"),
    ("s3.amazonaws.com", "Amazon S3"),
    ("any-bucket.s3.amazonaws.com", "Amazon S3 (virtual-hosted buckets)"),
    ("s3.us-east-1.amazonaws.com", "Amazon S3 (regional)"),
    ("any-bucket.s3.us-east-1.amazonaws.com", "Amazon S3 (regional buckets)"),
    ("any-function.lambda-url.us-east-1.on.aws", "AWS Lambda function URLs"),
    ("any-account.blob.core.windows.net", "Azure Blob Storage"),
    ("any-account.web.core.windows.net", "Azure static websites"),
    ("any-account.r2.cloudflarestorage.com", "Cloudflare R2"),
    ("any-worker.workers.dev", "Cloudflare Workers"),
    ("any-site.pages.dev", "Cloudflare Pages"),
    ("any-space.nyc3.digitaloceanspaces.com", "DigitalOcean Spaces"),
    ("s3.us-west-001.backblazeb2.com", "Backblaze B2"),
    ("raw.githubusercontent.com", "GitHub raw content"),
    ("gist.githubusercontent.com", "GitHub gists"),
    ("gist.github.com", "GitHub gists"),
    ("uploads.github.com", "GitHub uploads"),
    ("dl.dropboxusercontent.com", "Dropbox"),
    ("content.dropboxapi.com", "Dropbox API uploads"),
    ("pastebin.com", "Pastebin"),
    ("paste.ee", "paste.ee"),
    ("hastebin.com", "Hastebin"),
    ("dpaste.org", "dpaste"),
    ("transfer.sh", "transfer.sh"),
    ("any-tunnel.ngrok.io", "ngrok tunnels"),
    ("any-tunnel.ngrok-free.app", "ngrok tunnels"),
    ("any-bin.m.pipedream.net", "Pipedream request bins"),
    ("webhook.site", "webhook.site request bins"),
)


class SuffixLookup(Protocol):
    def suffix_key(self, host: str) -> Host | None: ...


def suffix_warnings(index: SuffixLookup) -> tuple[str, ...]:
    """One line per suffix entry that approves a shared endpoint, naming what it covers."""
    covered: dict[Host, list[str]] = {}
    for name, what in SHARED_ENDPOINTS:
        key = index.suffix_key(name)
        if key is not None:
            covered.setdefault(key, []).append(f"{name} ({what})")
    return tuple(
        f"entry {key} also approves shared-storage or paste endpoints where anyone can put "
        f"data: {', '.join(names)}; add exact entries for the names you need (an exact entry "
        "narrows the suffix for itself and the names under it) or deny-list these"
        for key, names in sorted(covered.items()))
