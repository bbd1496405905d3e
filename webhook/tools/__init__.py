"""The offline and operator commands built on the seam: ``check`` (CI), ``audit`` (a live
cluster, read-only), the offline decision path and report rendering, dev certificates.
"""
