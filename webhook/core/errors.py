"""The webhook's small exception tree.

Owns the exceptions that cross module boundaries. A policy "no" is never an exception (it is
a returned value); these are for input the webhook cannot use at all.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(WebhookError):
    """A policy or registry file is unusable; the message names the file, field and reason."""


class BadReview(WebhookError):
    """An HTTP body that is not a usable AdmissionReview (answered with HTTP 400)."""


class Undecidable(WebhookError):
    """A policy cannot decide (e.g. no egress registry was ever loaded): fail closed, code 500.

    The message is shown to the user, so it must say why and what an operator should do.
    """
