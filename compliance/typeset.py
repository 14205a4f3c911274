"""The fpdf2 page, fonts and building blocks that Offboard's PDFs share: the bundle's report
(``exporters/formats/pdf.py``) and the deletion certificate (``audit/certificate_pdf.py``).

It imports nothing from the project, so every floor may use it.

Fonts: fpdf2 ships no TrueType font and its core fonts are latin-1 only, so a document embeds
DejaVu Sans / Sans Mono (subset) when found in the ``font_dir`` it is given, else in a usual
system font directory (Debian/Ubuntu ``fonts-dejavu-core``, Fedora, Alpine, ...). Characters
DejaVu lacks (CJK, emoji, ...) become ``?``. Without DejaVu a document falls back to the core
fonts (Helvetica, Courier) and every non-latin-1 character becomes ``?``. There is no text
shaping (fpdf2 needs uharfbuzz for it), so joined scripts such as Arabic show their letters in
isolated forms: legible, not typeset.

Nothing here reads the clock: the creation date is the caller's, and fpdf2 derives the file /ID
from the content, so the same input and the same font files give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from fpdf import FPDF, FontFace

FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu-sans-fonts", "/usr/share/fonts/dejavu-sans-mono-fonts",  # Fedora
    "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF", "/usr/share/fonts/truetype",
    "/usr/local/share/fonts", "/opt/homebrew/share/fonts", "/Library/Fonts",
)
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}
CORE_FONTS = ("helvetica", "courier")


@cache
def find_fonts(font_dir: Path | None = None) -> dict[str, Path] | None:
    """DejaVu's regular, bold and mono files (bold may be missing), or None for core fonts."""
    for directory in ([font_dir] if font_dir else [Path(d) for d in FONT_DIRS]):
        found = {style: directory / name for style, name in FONT_FILES.items()
                 if (directory / name).is_file()}
        if "" in found and "mono" in found:
            return found
    return None


class Document(FPDF):
    """An A4 Offboard document: fonts, metadata, a footer with page numbers, and the blocks
    (headings, paragraphs, tables) both PDFs are built from, so they look alike."""

    heading_size: float = 13  # a section heading's size; a subclass may set its own

    def __init__(self, title: str, created: datetime, footer_label: str,
                 font_dir: Path | None = None) -> None:
        super().__init__(format="A4")
        self.footer_label = footer_label
        self.set_creation_date(created.astimezone(UTC))  # never the clock: deterministic output
        self.set_producer("Offboard")
        self.set_author("Offboard")
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)
        self.alias_nb_pages()
        fonts = find_fonts(font_dir)
        if fonts is None:
            self.sans, self.mono = CORE_FONTS
        else:
            self.sans, self.mono = "sans", "mono"
            self.add_font(self.sans, "", fonts[""])
            self.add_font(self.sans, "B", fonts.get("B", fonts[""]))
            self.add_font(self.mono, "", fonts["mono"])
        self.set_title(title)  # metadata is UTF-16, not drawn: no font limits it

    def text(self, value: object, family: str | None = None) -> str:
        """``value`` as text (None as ``-``), every character the font cannot draw replaced by ``?``."""
        value, family = "-" if value is None else str(value), family or self.sans
        if family in CORE_FONTS:
            return value.encode("latin-1", "replace").decode("latin-1")
        cmap = self.fonts[family].cmap
        return "".join(c if ord(c) in cmap or c in "\n\t" else "?" for c in value)

    def footer(self) -> None:
        """fpdf2 calls this on every page; ``{nb}`` becomes the page count when the file is written."""
        self.set_y(-12)
        self.set_font(self.sans, size=8)
        self.set_text_color(110)
        self.cell(0, 5, self.text(self.footer_label), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)

    def heading(self, title: str, size: float | None = None) -> None:
        size = self.heading_size if size is None else size
        if self.get_y() > self.h - 60:  # never a heading alone at the foot of a page
            self.add_page()
        self.ln(3)
        self.set_font(self.sans, "B", size)
        self.multi_cell(0, size * 0.5, self.text(title), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def paragraph(self, value: str, size: float = 10) -> None:
        self.set_font(self.sans, size=size)
        self.multi_cell(0, size * 0.5, self.text(value), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def _table(self, titles: Sequence[str] | None, rows: Sequence[Sequence[object]],
               widths: Sequence[float], size: float = 9, mono_last: bool = False) -> None:
        """A bordered table that breaks across pages, repeating its heading row (``titles``, if any);
        ``mono_last`` sets the last column in the mono font, for hashes and keys."""
        self.set_font(self.sans, size=size)
        bold = FontFace(family=self.sans, emphasis="BOLD", size_pt=size, fill_color=(230, 230, 230))
        mono = FontFace(family=self.mono, size_pt=size * 0.95)
        with self.table(col_widths=tuple(widths), text_align="LEFT", line_height=size * 0.5,
                        headings_style=bold, first_row_as_headings=titles is not None,
                        padding=1) as table:
            if titles is not None:
                table.row([self.text(title) for title in titles])
            for values in rows:
                row = table.row()
                for index, value in enumerate(values):
                    last = mono_last and index == len(values) - 1
                    row.cell(self.text(value, self.mono if last else None), style=mono if last else None)
