"""``agent-sandbox-webhook doctor``: is this cluster ready for agent sandboxes? Read-only."""
