"""Certificates: generation and PEM (``pki``), when to renew or rotate (``rotation``), and the
Secret/caBundle manager (``manager``) that reaches the API server through ``webhook.cluster``.
"""
