"""The case page's chart, drawn server-side as inline SVG (no JavaScript, no build step)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

WIDTH, HEIGHT, PAD = 720, 220, 40


def amounts_chart(
    points: Sequence[tuple[datetime, Decimal, bool, str]], *, currency: str, title: str
) -> str:
    """An SVG scatter of (time, amount, flagged, label); flagged points drawn red."""
    if not points:
        return ""
    times = [p[0].timestamp() for p in points]
    top = max(float(p[1]) for p in points) or 1.0
    start, end = min(times), max(times)
    span = (end - start) or 1.0

    def x(moment: float) -> float:
        return PAD + (moment - start) / span * (WIDTH - 2 * PAD)

    def y(amount: float) -> float:
        return HEIGHT - PAD - amount / top * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<text x="{PAD}" y="{PAD - 8}" font-size="11">{top:,.0f} {escape(currency)}</text>',
    ]
    ordinary = [p for p in points if not p[2]]
    flagged = [p for p in points if p[2]]
    for moment, amount, is_flagged, label in [*ordinary, *flagged]:
        colour, radius = ("#d62728", 6) if is_flagged else ("#1f77b4", 3)
        parts.append(
            f'<circle cx="{x(moment.timestamp()):.1f}" cy="{y(float(amount)):.1f}" r="{radius}" '
            f'fill="{colour}" class="{"flagged" if is_flagged else "tx"}">'
            f"<title>{escape(label)}</title></circle>"
        )
    first = min(p[0] for p in points).strftime("%Y-%m-%d")
    last = max(p[0] for p in points).strftime("%Y-%m-%d")
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 12}" font-size="11">{first}</text>')
    parts.append(
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 12}" font-size="11" text-anchor="end">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["amounts_chart"]
