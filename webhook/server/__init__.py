"""The transport: the aiohttp application, the ``serve`` lifecycle, connection limits, the TLS
context, metrics, decision logs and background tasks. The only layer that imports aiohttp.
"""
