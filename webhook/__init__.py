"""agent-sandbox-webhook: admission control that keeps AI-agent pods isolated and their egress
approved. See README.md for the layers; ``webhook.admission.seam`` is the entry point for logic."""

__version__ = "0.1.0"
