"""Label and annotation names this project reads or writes on cluster objects.

Owns the names only, so that the webhook, the offline tools and the cluster listing spell them
the same way. Their meaning is documented where they are acted on.
"""

from __future__ import annotations

from typing import Final

# The switch for a namespace: "true" enforces, "warn" only warns; anything else is not ours.
ENFORCE_LABEL: Final = "agentsandbox.io/enforce"
