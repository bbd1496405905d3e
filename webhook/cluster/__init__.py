"""The only users of the kubernetes client: the thin API wrapper the certificate manager uses
(``kube``) and the read-only listing ``audit`` reads from (``listing``).
"""
