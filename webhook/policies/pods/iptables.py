"""Reading ``istio-iptables`` arguments: does Istio's init container capture everything?

Owns parsing the argument vector the way Go's pflag reads it (``-x v``, ``-xv``, ``-x=v``,
``--long v``, ``--long=v``; the last occurrence wins) and judging it: outbound capture of
every destination (``-i '*'``), nothing excluded (``-x``, ``-o``, ``-c``, ``-k`` empty or
absent), REDIRECT interception, the configured proxy UID/GID, and rules really applied
(``--dry-run``/``--skip-rule-apply`` only with the CNI's ``--run-validation``). It does not
find the containers (``istio``) and knows nothing of annotations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from webhook.policies.pods.walk import UNREAD, ContainerRef, argv

PROGRAM = "istio-iptables"

# short flag -> canonical long name, for the flags that take a value.
_SHORT = {
    "p": "envoy-port", "z": "inbound-capture-port", "u": "proxy-uid", "g": "proxy-gid",
    "m": "istio-inbound-interception-mode", "i": "istio-service-cidr",
    "x": "istio-service-exclude-cidr", "b": "istio-inbound-ports",
    "d": "istio-local-exclude-ports", "o": "istio-local-outbound-ports-exclude",
    "q": "istio-local-outbound-ports-include", "c": "istio-exclude-interfaces",
    "k": "kube-virt-interfaces", "t": "inbound-tproxy-mark", "r": "inbound-tproxy-route-table",
}
_ALIASES = {"reroute-virtual-interfaces": "kube-virt-interfaces"}
_VALUE_FLAGS = frozenset(_SHORT.values()) | {"log_output_level", "network-namespace",
                                             "iptables-version", "probe-timeout",
                                             "iptables-probe-port", "log_target"}
_SWITCHES = frozenset({"dry-run", "skip-rule-apply", "run-validation", "redirect-dns",
                       "capture-all-dns", "drop-invalid", "dual-stack", "log_as_json"})
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_NARROWING = {
    "istio-service-exclude-cidr": "-x (excluded outbound IP ranges)",
    "istio-local-outbound-ports-exclude": "-o (excluded outbound ports)",
    "istio-exclude-interfaces": "-c (excluded interfaces)",
    "kube-virt-interfaces": "-k (rerouted virtual interfaces)",
}


@dataclass(slots=True)
class ParsedArgs:
    values: dict[str, list[str]] = field(default_factory=dict)
    switches: set[str] = field(default_factory=set)


def iptables_argv(container: dict[str, Any]) -> list[str] | None:
    """The arguments after ``istio-iptables`` when the container runs it, else None."""
    words = argv(container)
    for index, word in enumerate(words[:2]):
        if word.rsplit("/", 1)[-1] == PROGRAM:
            return words[index + 1:]
    return None


class Argv(NamedTuple):
    """A container's istio-iptables arguments, and whether they are small enough to memoise."""

    words: tuple[str, ...]
    small: bool


def ref_argv(ref: ContainerRef) -> Argv | None:
    """``iptables_argv`` of a container, read once per review (the ref keeps it)."""
    read = ref.iptables
    if read is UNREAD:
        found = iptables_argv(ref.body)
        read = ref.iptables = None if found is None else Argv(tuple(found), memoisable(found))
    result: Argv | None = read
    return result


def parse_args(words: list[str]) -> ParsedArgs:
    parsed = ParsedArgs()
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        name: str | None = None
        value: str | None = None
        if word.startswith("--") and len(word) > 2:
            name, eq, rest = word[2:].partition("=")
            name = _ALIASES.get(name, name)
            value = rest if eq else None
        elif word.startswith("-") and len(word) > 1:
            name = _SHORT.get(word[1], word[1])
            rest = word[2:]
            value = rest[1:] if rest.startswith("=") else (rest or None)
        else:
            continue  # a stray positional word: pflag ignores it for flags
        if value is None and name in _VALUE_FLAGS:
            value = words[index] if index < len(words) else ""
            index += 1
        if name in _SWITCHES:
            # pflag booleans take only the attached form: --dry-run=true.
            if value is None or value in _TRUE:
                parsed.switches.add(name)
        elif value is None:
            parsed.switches.add(name)
        else:
            parsed.values.setdefault(name, []).append(value)
    return parsed


# Every final pod carries the injector's same few argument vectors, so their judgement is
# memoised. Only short vectors are kept: the key holds the words, and hostile input must not
# pin large ones in memory.
_MEMO_WORDS = 64
_MEMO_CHARS = 4096


def memoisable(words: Sequence[str]) -> bool:
    return len(words) <= _MEMO_WORDS and sum(map(len, words)) <= _MEMO_CHARS


def capture_problems(words: Sequence[str], *, proxy_uid: int, proxy_gid: int,
                     cni: bool, small: bool | None = None) -> list[str]:
    """What in these arguments lets outbound traffic skip the proxy (empty: all captured).

    ``small`` is ``memoisable(words)`` when the caller knows it (``Argv.small``).
    """
    if memoisable(words) if small is None else small:
        return list(_memo_problems(tuple(words), proxy_uid, proxy_gid, cni))
    return _problems(list(words), proxy_uid=proxy_uid, proxy_gid=proxy_gid, cni=cni)


@lru_cache(maxsize=128)
def _memo_problems(words: tuple[str, ...], proxy_uid: int, proxy_gid: int,
                   cni: bool) -> tuple[str, ...]:
    return tuple(_problems(list(words), proxy_uid=proxy_uid, proxy_gid=proxy_gid, cni=cni))


def _problems(words: list[str], *, proxy_uid: int, proxy_gid: int, cni: bool) -> list[str]:
    parsed = parse_args(words)
    problems: list[str] = []
    cidrs = parsed.values.get("istio-service-cidr")
    if not cidrs or cidrs[-1] != "*":
        problems.append(f"-i is {cidrs[-1] if cidrs else 'missing'!r}, not '*' (capture "
                        "every outbound destination)")
    for name, label in _NARROWING.items():
        values = [v for v in parsed.values.get(name, []) if v.strip()]
        if values:
            problems.append(f"{label} is {values[-1]!r}")
    uids = parsed.values.get("proxy-uid")
    if not uids or uids[-1].strip() != str(proxy_uid):
        problems.append(f"-u is {uids[-1] if uids else 'missing'!r}, not the proxy UID "
                        f"{proxy_uid}")
    gids = parsed.values.get("proxy-gid")
    if gids and gids[-1].strip() != str(proxy_gid):
        problems.append(f"-g is {gids[-1]!r}, not the proxy GID {proxy_gid}")
    modes = parsed.values.get("istio-inbound-interception-mode")
    if modes and modes[-1] != "REDIRECT":
        problems.append(f"-m is {modes[-1]!r}, not REDIRECT")
    if not cni:
        skipped = parsed.switches & {"dry-run", "skip-rule-apply", "run-validation"}
        if skipped:
            problems.append(f"--{sorted(skipped)[0]} means no rules are applied")
    return problems
