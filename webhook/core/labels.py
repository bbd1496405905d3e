"""Label and annotation names this project reads or writes on cluster objects.

Owns the names only, so that the webhook, the offline tools and the cluster listing spell them
the same way. Their meaning is documented where they are acted on.
"""

from __future__ import annotations

from typing import Final

# The switch for a namespace: "true" enforces, "warn" only warns; anything else is not ours.
ENFORCE_LABEL: Final = "agentsandbox.io/enforce"

# On everything the project renders or owns: the controller applies, and deletes, only these.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "agent-sandbox-webhook"

# Per-agent identity the mesh can select on (Sidecar.workloadSelector matches labels only).
SERVICE_ACCOUNT_LABEL: Final = "agentsandbox.io/service-account"
SKILL_LABEL: Final = "agentsandbox.io/skill"

# Names of the per-namespace objects `render` produces (other tools look for them by name).
NETWORK_POLICY_NAME: Final = "agent-sandbox-egress"
DEFAULT_SIDECAR_NAME: Final = "agent-sandbox-default"
SERVICE_ACCOUNT_SIDECAR_PREFIX: Final = "agent-sandbox-sa-"  # + the service account
SKILL_SIDECAR_PREFIX: Final = "agent-sandbox-skill-"  # + the Skill's name
SERVICE_ENTRY_PREFIX: Final = "agent-sandbox-"
ADMIN_NETWORK_POLICY_NAME: Final = "agent-sandbox-egress-floor"
DNS_ALLOWLIST_CONFIGMAP: Final = "agent-sandbox-dns-allowlist"

# Kubernetes' own: which controller manages an EndpointSlice (endpointslice-controller.k8s.io
# for a Service's selector, endpointslicemirroring-controller.k8s.io for a copied Endpoints).
ENDPOINTSLICE_MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"

# On the egress-registry ConfigMap: the validating configuration selects it by this label
# (objectSelector, served by Kubernetes 1.27; matchConditions are 1.28+).
REGISTRY_LABEL: Final = "agentsandbox.io/egress-registry"
