"""The operator's policy file: its strict model, YAML loading with one error wording, quantities,
and keeping a parsed file current (``watch``). Depends only on ``webhook.core``.
"""
