"""Kubernetes quantities parse exactly, in every form the API server accepts."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.config import quantity
from webhook.config.quantity import exact_quantity, format_bytes, parse_quantity

GI = 2**30


@pytest.mark.parametrize(("text", "value"), [
    ("2Gi", 2 * GI), ("512Mi", 512 * 2**20), ("1Ki", 1024), ("1Ti", 2**40), ("1Ei", 2**60),
    ("1k", 1000), ("1M", 10**6), ("1G", 10**9), ("1T", 10**12), ("1P", 10**15),
    ("1E", 10**18), ("500m", Fraction(1, 2)), ("1e3", 1000), ("1E3", 1000),
    ("5e-1", Fraction(1, 2)), ("1.5Gi", 3 * GI // 2), ("0.5Gi", GI // 2), (".5Gi", GI // 2),
    ("1.", 1), ("+1Gi", GI), ("-1Gi", -GI), ("0", 0), ("1073741824", GI), (1073741824, GI),
    ("1e+2", 100), ("1e0003", 1000),
])
def test_a_quantity_parses_exactly(text: str | int, value: int | Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", " 1Gi", "1Gi ", "1gi", "1KI", "1e",
                                  "1.5.5", "1i", "1Gi1", "e3", "1e1000", "1e-999", "0x10",
                                  "1,5Gi", "\u0661Gi", True, 1.5, None, ["1Gi"]])
def test_a_non_quantity_is_refused_with_a_reason(text: object) -> None:
    with pytest.raises(ValueError, match=r"quantity|exponent"):
        parse_quantity(text)


def test_a_huge_number_is_refused_not_crashed() -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity("9" * 10000)


@pytest.mark.parametrize(("value", "text"), [
    (2 * GI, "2Gi"), (1536 * 2**20, "1536Mi"), (10**9, "1000000000"), (1024, "1Ki"),
    (Fraction(1, 2), "1"), (0, "0"), (GI + 1, str(GI + 1)),
])
def test_bytes_are_formatted_in_the_largest_exact_binary_unit(value: int | Fraction,
                                                              text: str) -> None:
    assert format_bytes(Fraction(value)) == text


@given(st.fractions(min_value=0, max_value=2**50))
def test_formatting_never_renders_below_the_value(value: Fraction) -> None:
    rendered = parse_quantity(format_bytes(value))
    assert value <= rendered < value + 1


@pytest.mark.parametrize(("text", "expected"), [
    ("512Mi", 512 * 2**20), ("0.5Gi", 2**29), ("1e3", 1000), (1073741824, 2**30),
    ("500m", Fraction(1, 2)), ("-1Ki", -1024)])
def test_exact_quantity_is_an_int_whenever_whole(text: object, expected: int | Fraction) -> None:
    value = exact_quantity(text)
    assert value == parse_quantity(text) == expected
    assert type(value) is (int if Fraction(expected).denominator == 1 else Fraction)


def test_only_short_quantity_texts_are_remembered() -> None:
    # Texts come from requests: a long (still valid) one is parsed but never kept.
    long_text = "1" + "0" * 200
    before = (quantity._memo_exact.cache_info().currsize,
              quantity._memo_parse.cache_info().currsize)
    assert exact_quantity(long_text) == 10**200
    assert parse_quantity(long_text) == 10**200
    assert (quantity._memo_exact.cache_info().currsize,
            quantity._memo_parse.cache_info().currsize) == before
    exact_quantity("3Mi")
    assert quantity._memo_exact.cache_info().currsize >= 1
