"""Placeholder until the pod policy lands."""

from __future__ import annotations

from webhook.policies.context import Context
from webhook.policies.result import Verdict
from webhook.review import Request


def mutate_pod(request: Request, context: Context) -> Verdict:
    return Verdict()


def validate_pod(request: Request, context: Context) -> Verdict:
    return Verdict()
