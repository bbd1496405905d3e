"""Exact parsing and formatting of Kubernetes resource quantities.

Owns the quantity grammar of ``k8s.io/apimachinery/pkg/api/resource``: binary suffixes
(Ki..Ei), decimal suffixes (m, k, M..E), decimal exponents (``1e3``, ``5E-1``) and signs.
Values are ``Fraction`` so that ``0.5Gi`` and ``512Mi`` compare equal with no float error;
``exact_quantity`` gives the same value as an ``int`` whenever it is whole (nearly always),
which the hot path compares far more cheaply. It knows nothing of pods; the memory-floor
policy uses it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3),
            "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?\d+)|(?P<decimal>[mkMGTPE]?))",
    re.ASCII,  # \d must not match other scripts' digits, which the API server refuses
)
# Kubernetes refuses exponents this large; bounding them keeps Fraction arithmetic cheap on
# hostile input.
_MAX_EXPONENT = 100
# Pods repeat the same few quantities endlessly, so parsing is memoised; texts come from
# requests, so only short ones are kept (any real quantity is far shorter).
_MEMO_TEXT = 64


def parse_quantity(text: object) -> Fraction:
    """Parse a quantity exactly, or raise ValueError saying what was wrong.

    A JSON integer is accepted as the API server does (``memory: 1073741824``); booleans,
    floats and everything else are refused, because their text form is ambiguous.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"quantity must be a string, got {type(text).__name__}")
    text = str(text)
    return _memo_parse(text) if len(text) <= _MEMO_TEXT else _parse(text)


def exact_quantity(text: object) -> int | Fraction:
    """``parse_quantity``, as an ``int`` when the value is whole (the two compare exactly)."""
    if type(text) is str and len(text) <= _MEMO_TEXT:
        return _memo_exact(text)
    return _whole(parse_quantity(text))


def _whole(value: Fraction) -> int | Fraction:
    return int(value) if value.denominator == 1 else value


@lru_cache(maxsize=1024)  # pure, and Fractions and ints are immutable
def _memo_exact(text: str) -> int | Fraction:
    return _whole(parse_quantity(text))


def _parse(text: str) -> Fraction:
    # No stripping: the API server refuses surrounding whitespace, so must we.
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 512Mi, 2Gi, 1G, "
                         "1e9, 500m)")
    try:
        number = Fraction(match["number"])
    except ValueError as exc:  # e.g. more digits than int() accepts
        raise ValueError(f"{text[:40]!r}... is not a usable quantity: {exc}") from exc
    if match["binary"]:
        return number * _BINARY[match["binary"]]
    if match["exponent"] is not None:
        raw = match["exponent"]
        digits = raw.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 3 or int(digits) > _MAX_EXPONENT:
            raise ValueError(f"{text[:40]!r}: exponent out of range")
        exponent = -int(digits) if raw.startswith("-") else int(digits)
        return number * Fraction(10) ** exponent
    return number * _DECIMAL[match["decimal"] or ""]


_memo_parse = lru_cache(maxsize=1024)(_parse)


# The same few floors and totals are rendered for every pod; the rendering is pure.
@lru_cache(maxsize=256)
def format_bytes(value: int | Fraction) -> str:
    """Render a byte count in the largest binary unit that divides it exactly.

    Fractions of a byte are rounded up: a floor must never be rendered below itself.
    """
    whole = value if isinstance(value, int) else -(-value.numerator // value.denominator)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if whole and whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return str(whole)
