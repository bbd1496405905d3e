"""What a policy may know besides the object: the loaded policy file and egress registry.

Owns the ``Context`` value handed to every handler and the ``Handler`` signature. The
registry is ``None`` until a good registry has been loaded; ``registry_problem`` then says
why, so that egress policies can fail closed with a useful message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from webhook.config.policy import Policy
from webhook.core.review import Request
from webhook.egress.registry import Registry
from webhook.policies.result import Verdict

NO_REGISTRY = ("no egress registry has been loaded yet, so egress objects cannot be checked "
               "and are refused; an operator must provide a valid registry file")


@dataclass(frozen=True, slots=True)
class Context:
    policy: Policy
    registry: Registry | None = None
    registry_problem: str = NO_REGISTRY


Handler = Callable[[Request, Context], Verdict]
