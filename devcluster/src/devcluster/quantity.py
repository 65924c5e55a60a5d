"""Kubernetes resource quantities ("500m", "1.5Gi", "2"), exact, and written back as the API server writes them.

Why exact: admission compares and sums quantities (a quota's `used` plus a pod's requests against `hard`) and
quotes them in its refusals (`requested: requests.cpu=1500m`), so rounding through floats would give other
numbers than kube-apiserver's. `Quantity.text` is k8s.io/apimachinery's canonical `Quantity.String()`: decimal
quantities take the largest SI suffix whose mantissa is whole (`1000m` -> `1`, `2000` -> `2k`, `0.5` -> `500m`),
binary ones the largest power-of-1024 suffix (`1024Mi` -> `1Gi`), falling back to decimal below 1024 or for a
fractional number of bytes; values round up to nano units. A sum keeps the format of its first non-zero term,
as `Quantity.Add` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

_PATTERN = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = {exponent: suffix for suffix, exponent in _BINARY.items()}

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"


@dataclass(frozen=True)
class Quantity:
    """An exact amount of a resource in base units (cores, bytes, objects) and the format it is written in."""

    value: Fraction
    format: str = DECIMAL_SI

    @classmethod
    def parse(cls, text: Any) -> Quantity:
        """Parse a quantity as the API accepts it; ValueError for anything else."""
        match = _PATTERN.match(str(text).strip())
        if match is None:
            raise ValueError(f"invalid resource quantity {text!r}: quantities must match the regular expression "
                             "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        number, suffix = Fraction(match.group(1)), match.group(2) or ""
        if suffix in _BINARY:
            return cls(number * 2 ** _BINARY[suffix], BINARY_SI)
        if suffix in _DECIMAL:
            return cls(number * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI)
        return cls(number * Fraction(10) ** int(suffix[1:]), DECIMAL_EXPONENT)

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, other.format if self.value == 0 else self.format)

    def milli(self) -> int:
        """The value in thousandths, rounded up (`MilliValue()`): how LimitRanger compares quantities."""
        return math.ceil(self.value * 1000)

    @property
    def text(self) -> str:
        """The canonical form (`Quantity.String()`)."""
        nano = math.ceil(self.value * 10**9)  # the API rounds up to nano units
        if nano == 0:
            return "0"
        if self.format == BINARY_SI and abs(self.value) >= 1024 and nano % 10**9 == 0:
            number, exponent = nano // 10**9, 0
            while number % 1024 == 0 and exponent < 60:
                number, exponent = number // 1024, exponent + 10
            return f"{number}{_BINARY_SUFFIX.get(exponent, '')}"
        number, exponent = nano, -9
        while number % 1000 == 0 and exponent < 18:
            number, exponent = number // 1000, exponent + 3
        if self.format == DECIMAL_EXPONENT:
            return f"{number}e{exponent}" if exponent else str(number)
        return f"{number}{_DECIMAL_SUFFIX[exponent]}"

    def __str__(self) -> str:
        return self.text


ZERO = Quantity(Fraction(0))
ONE = Quantity(Fraction(1))


def total(quantities: list[Quantity]) -> Quantity:
    """The sum of quantities in order (the format of the first non-zero one)."""
    result = ZERO
    for quantity in quantities:
        result = result + quantity
    return result
