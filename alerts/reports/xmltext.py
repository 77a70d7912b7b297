"""Deterministic XML bytes and exact amount text shared by the XML formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
CENT = Decimal("0.01")


def amount_text(value: Decimal) -> str:
    """An exact decimal as plain text with at least two places (padding, never rounding)."""
    if not isinstance(value, Decimal):
        raise TypeError(f"amounts are Decimals, not {type(value).__name__}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        value = value.quantize(CENT)
    return format(value, "f")


def child(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    """Append element ``tag`` (with ``text``) to ``parent``."""
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def to_bytes(root: ET.Element) -> bytes:
    """UTF-8 bytes with a declaration, two-space indents and a final newline: the same
    elements always give the same bytes."""
    ET.indent(root, space="  ")
    return DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8") + b"\n"


__all__ = ["amount_text", "child", "to_bytes"]
