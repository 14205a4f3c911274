"""Small charts drawn on the server as inline SVG: readable without JavaScript, no library.

Positions are percentages of the chart's width and sizes are pixels, with no viewBox: the bars
stretch with the page while the text keeps its size, from a 375 px phone to a desktop. Each
chart is an image with a ``<title>`` and a ``<desc>`` that says every number it draws, so a
screen reader hears the figures; pages also print them in a table. Colours reach at least
4.5:1 against white (WCAG 1.4.11 asks 3:1 for graphics), and stacked segments are parted by
a white line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

INK, MUTED, LINE = "#1b2230", "#5b6577", "#b9c1cf"
PALETTE = ("#1f4fa3", "#b3261e", "#1d7a46", "#8a5a00", "#6b3fa0", "#0e7490", "#be185d", "#4d5b1f",
           "#c2410c", "#5b6577", "#1b2230")
ROW, BAR = 30, 18  # horizontal bars: px per row, bar thickness
LABELS, PLOT = 34.0, 56.0  # horizontal bars: % of the width for the labels, then for the longest bar
COLUMNS_HEIGHT, FOOT, HEAD = 200, 34, 20  # columns: plot height, month labels below, totals above


@dataclass(frozen=True)
class Series:
    label: str
    colour: str
    values: Sequence[int]


def colours(names: Sequence[str]) -> dict[str, str]:
    """A distinct palette colour per name, in order (repeating after eleven)."""
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}


def bars(ident: str, title: str, summary: str, items: Sequence[tuple[str, int]],
         colour: str = PALETTE[0]) -> Markup:
    """Horizontal bars, one per ``(label, value)``, each value printed at its bar's end."""
    top = max((value for _, value in items), default=0) or 1
    shapes = []
    for row, (label, value) in enumerate(items):
        y, width = row * ROW + 4, PLOT * value / top
        shapes.append(Markup(
            '<text x="0" y="{base}" fill="{ink}">{label}</text>'
            '<rect x="{left}%" y="{y}" width="{width:.2f}%" height="{bar}" rx="2" fill="{colour}"/>'
            '<text x="{end:.2f}%" dx="6" y="{base}" fill="{ink}" font-weight="600">{value:,}</text>'
        ).format(base=y + BAR - 4, ink=INK, label=label, left=LABELS, y=y, width=width, bar=BAR,
                 colour=colour, end=LABELS + width, value=value))
    numbers = "; ".join(f"{label}: {value:,}" for label, value in items)
    return _svg(ident, title, f"{summary} {numbers}.", ROW * len(items) + 6, shapes)


def stacked_columns(ident: str, title: str, summary: str, columns: Sequence[str],
                    series: Sequence[Series]) -> Markup:
    """One column per ``columns`` entry (e.g. a month), stacked by series, its total on top."""
    totals = [sum(one.values[index] for one in series) for index in range(len(columns))]
    top = max(totals, default=0) or 1
    step = 100 / max(len(columns), 1)
    base = HEAD + COLUMNS_HEIGHT
    shapes = [Markup('<line x1="0" x2="100%" y1="{y}" y2="{y}" stroke="{line}"/>')
              .format(y=base + 0.5, line=LINE)]
    for index, column in enumerate(columns):
        x, y, middle = step * (index + 0.15), float(base), step * (index + 0.5)
        for one in series:
            value = one.values[index]
            if value:
                height = COLUMNS_HEIGHT * value / top
                y -= height
                shapes.append(Markup(
                    '<rect x="{x:.2f}%" y="{y:.2f}" width="{width:.2f}%" height="{height:.2f}" '
                    'fill="{colour}" stroke="#fff" stroke-width="1">'
                    '<title>{column}, {label}: {value:,}</title></rect>'
                ).format(x=x, y=y, width=step * 0.7, height=height, colour=one.colour, column=column,
                         label=one.label, value=value))
        if totals[index]:
            shapes.append(Markup('<text x="{x:.2f}%" y="{y:.2f}" text-anchor="middle" fill="{ink}" '
                                 'font-weight="600">{total:,}</text>')
                          .format(x=middle, y=y - 5, ink=INK, total=totals[index]))
        # "Mar 2026": the year on a second line, only where it changes
        lines = column.split(" ", 1)
        if index and lines[1:] == columns[index - 1].split(" ", 1)[1:]:
            lines = lines[:1]
        minor = index % 2 == 1 and len(lines) == 1  # hidden on a phone (admin.css): the labels would touch
        for line, text in enumerate(lines):
            shapes.append(Markup('<text x="{x:.2f}%" y="{y}" text-anchor="middle" fill="{muted}" '
                                 'font-size="{size}"{minor}>{text}</text>')
                          .format(x=middle, y=base + 15 + 14 * line, muted=MUTED, size=12 - line, text=text,
                                  minor=Markup(' class="minor"') if minor else ""))
    numbers = "; ".join(
        f"{column}: {total:,}" + (" (" + ", ".join(f"{one.label} {one.values[index]:,}" for one in series
                                                  if one.values[index]) + ")" if total else "")
        for index, (column, total) in enumerate(zip(columns, totals, strict=True)))
    return _svg(ident, title, f"{summary} {numbers}.", base + FOOT, shapes)


def _svg(ident: str, title: str, desc: str, height: int, shapes: list[Markup]) -> Markup:
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="100%" height="{height}" '
        'style="height: {height}px" font-size="13" font-family="system-ui, sans-serif" '
        'aria-labelledby="{ident}-title {ident}-desc"><title id="{ident}-title">{title}</title>'
        '<desc id="{ident}-desc">{desc}</desc>{body}</svg>'
    ).format(height=height, ident=ident, title=title, desc=desc, body=Markup("").join(shapes))
