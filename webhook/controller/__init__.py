"""The controller that keeps every rendered egress layer in the cluster.

``plan`` decides (pure: desired objects and what the cluster holds in, the steps out),
``reconcile`` carries one pass out through ``webhook.cluster.owned``, ``metrics`` counts, and
``run`` holds the watches, the resync timer and leader election together. What it applies is
``webhook.egress.render.render_layers``'s output, byte for byte: the same function as
``agent-sandbox-webhook render``. Nothing here is on the admission path.
"""
