"""Command-line flags that can also come from the environment, with both shown in ``--help``.

Owns the convention every ``serve`` flag follows: ``--some-flag`` falls back to the variable
``AGENT_SANDBOX_SOME_FLAG``, then to its default, and its help line ends with
``(env AGENT_SANDBOX_SOME_FLAG; default ...)`` so that ``--help`` is the whole reference (the
Deployment in manifests/ may set either). It does not know any flag; the CLI and the
certificate manager declare theirs with it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ENV_PREFIX = "AGENT_SANDBOX_"


def env_name(flag: str) -> str:
    """``--cert-dir`` -> ``AGENT_SANDBOX_CERT_DIR``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add_env_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, *,
                     help: str, default: str | None = None,
                     kind: Callable[[str], Any] = str, shown_default: str | None = None,
                     choices: Sequence[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> None:
    """Add ``flag``; its default is the environment variable's value, else ``default``.

    ``shown_default`` is what ``--help`` says when there is no literal default (for example
    "the embedded policy"); ``kind`` converts the environment's text like a typed flag would.
    """
    variable = env_name(flag)
    raw = (os.environ if environ is None else environ).get(variable, default)
    described = shown_default if shown_default is not None else default
    parser.add_argument(flag, type=kind, choices=choices,
                        default=kind(raw) if raw is not None else None,
                        help=f"{help} (env {variable}; default {described or 'none'})")
