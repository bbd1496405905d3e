"""Namespace labels that look like the enforcement switch but are not it.

Owns the one judgement ``check`` and ``doctor`` share: a namespace whose labels contain
``agentsandbox.io/enforced`` (the pod annotation's name), ``agent-sandbox.io/enforce``,
``agentsandbox.io/enforce: "True"`` and the like is *not* an agent namespace, and nothing
in it is checked or made safe, silently. Each finding says what was found and what to write.

Deliberately only warns: such a namespace is not selected by the webhook configurations
either, so refusing it here would not match the cluster.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from webhook.core.labels import ENFORCE_LABEL

ENFORCE_VALUES = ("true", "warn")
_NAME = ENFORCE_LABEL.partition("/")[2]


def _squashed(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def lookalike_labels(labels: Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a namespace's labels, as ``label ...: why; fix`` sentences."""
    findings = []
    for key, value in (labels or {}).items():
        if not isinstance(key, str):
            continue
        if key == ENFORCE_LABEL:
            if value not in ENFORCE_VALUES:
                findings.append(
                    f"label {ENFORCE_LABEL}={value!r} is neither \"true\" nor \"warn\", so the "
                    f"namespace is not an agent namespace; set {ENFORCE_LABEL}=true (or warn)")
            continue
        prefix, _, name = key.rpartition("/")
        ours_prefix = _squashed(prefix).startswith("agentsandbox")
        ours_name = difflib.SequenceMatcher(None, name.lower(), _NAME).ratio() >= 0.75
        if ours_name and (ours_prefix or not prefix):
            findings.append(
                f"label {key}={value!r} looks like {ENFORCE_LABEL} but is not it, so the "
                f"namespace is not an agent namespace; use {ENFORCE_LABEL}=true (or warn)")
    return findings
