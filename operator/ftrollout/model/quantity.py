"""Kubernetes resource quantities ("100m", "256Mi", "1", "1.5", "2e3"), as users write them."""

from __future__ import annotations

import re
from decimal import Decimal

# Non-negative quantities only (resource requests and limits); the suffixes of
# k8s.io/apimachinery/pkg/api/resource. "E" alone is exa, "E3" an exponent, as in Kubernetes.
QUANTITY_PATTERN = (
    r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
_FULL = re.compile(QUANTITY_PATTERN)
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str) -> Decimal:
    """The amount a quantity stands for; ValueError with the offending text otherwise."""
    match = _FULL.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid quantity {text!r}: use a number with an optional suffix, "
            "like 100m or 1 (CPU), 256Mi or 1Gi (memory)"
        )
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SUFFIX[suffix]
