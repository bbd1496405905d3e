"""The do-nothing server: the ceiling of aiohttp + TLS + Python on this machine.

Reads the body and answers every POST with one fixed, allowed AdmissionReview, over the same
TLS context the webhook builds (``webhook.server.tls.ServingTLS``), with the access log off and the
same listener settings as ``webhook.server.serve``. It never parses the body, so the difference
between it and the real server is what admission costs.

Run: ``python -m bench.baseline_server --listen 127.0.0.1:9443 --tls-cert C --tls-key K``;
it prints ``listening`` on stdout once the socket is open and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

import orjson
from aiohttp import web

from webhook.server.tls import ServingTLS

FIXED = orjson.dumps({
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "response": {"uid": "00000000-0000-0000-0000-000000000000", "allowed": True},
})


async def _answer(http: web.Request) -> web.Response:
    await http.read()
    return web.Response(body=FIXED, content_type="application/json")


async def _healthz(http: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def create_app(max_body: int = 8 * 1024 * 1024) -> web.Application:
    app = web.Application(client_max_size=max_body)
    for path in ("/mutate", "/validate"):
        app.router.add_post(path, _answer)
    app.router.add_get("/healthz", _healthz)
    return app


async def serve(host: str, port: int, cert: Path, key: Path) -> None:
    tls = ServingTLS(cert_path=cert, key_path=key)
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls.context, backlog=1024,
                       reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("listening", flush=True)
    await stop.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_server")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--tls-cert", required=True, type=Path)
    parser.add_argument("--tls-key", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    asyncio.run(serve(host, int(port), args.tls_cert, args.tls_key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
