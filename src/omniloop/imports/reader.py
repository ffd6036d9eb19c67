"""Reading CSV files as POS systems and spreadsheets export them.

* Encoding: UTF-8 with or without a byte-order mark; UTF-16 with one (Excel's "Unicode
  text"); otherwise Big5 in Microsoft's CP950 form (what Excel on a Taiwanese Windows saves
  as "CSV"), then Big5-HKSCS.
* Delimiter: comma, semicolon or tab, whichever splits the header line into the most
  columns; Excel's `sep=;` first line is honoured.
* Headers: matched to fields through aliases in zh-TW and English, ignoring case, spaces,
  `_`, `-`, full-width forms and a trailing "(unit)". Unknown columns are ignored and
  listed; when two columns mean one field, the better-ranked alias wins (手機 over 電話).

Row numbers are those a spreadsheet shows: the header is row 1, and blank lines count.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from omniloop.imports.errors import ExcelWorkbook, NoHeader, NotText, TooManyRows

DELIMITERS = (",", "\t", ";")
MAX_ROWS = 500_000
_HEADER_NOISE = re.compile(r"\(.*?\)|[\s_\-./:*#'\"]+")
_BIG5_NAMES = {"cp950": "Big5 (CP950)", "big5hkscs": "Big5-HKSCS"}

csv.field_size_limit(1 << 20)


@dataclass(frozen=True)
class Field:
    """A column the importer understands, and the names it goes by, best first."""

    name: str
    aliases: tuple[str, ...]
    label: str = ""  # how to name it in "missing column" messages, e.g. "手機/phone"

    def shown(self) -> str:
        return self.label or self.aliases[0]


@dataclass(frozen=True)
class Row:
    number: int  # as a spreadsheet shows it: the header is row 1
    cells: dict[str, str]  # field name → the cell's text, stripped ("" when empty)
    extra: int = 0  # non-empty cells beyond the header's columns


@dataclass
class Table:
    encoding: str
    delimiter: str
    columns: dict[str, str]  # field name → the header as written in the file
    ignored: list[str]
    header_width: int
    rows: list[Row] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return name in self.columns

    def column(self, name: str) -> str:
        return self.columns.get(name, name)


def normalize_header(text: str) -> str:
    """'E-mail ', 'ＬＩＮＥ　ID', '單價（元）' → 'email', 'lineid', '單價'."""
    folded = unicodedata.normalize("NFKC", text).replace("\ufeff", "").casefold()
    return _HEADER_NOISE.sub("", folded)


def decode(data: bytes) -> tuple[str, str]:
    """The text of the file and the name of its encoding."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ExcelWorkbook()
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8 (BOM)"
        except UnicodeDecodeError:
            raise NotText() from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            raise NotText() from None
    if b"\x00" in data:
        raise NotText()
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    for encoding in ("cp950", "big5hkscs"):
        try:
            return data.decode(encoding), _BIG5_NAMES[encoding]
        except UnicodeDecodeError:
            continue
    raise NotText()


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most columns (comma on a tie)."""
    best, width = ",", len(_split(header_line, ","))
    for delimiter in DELIMITERS[1:]:
        count = len(_split(header_line, delimiter))
        if count > width:
            best, width = delimiter, count
    return best


def _lines(text: str) -> tuple[str, str | None, int]:
    """The text without an Excel `sep=` line, the delimiter it named, and lines skipped."""
    first, _, rest = text.partition("\n")
    match = re.fullmatch(r"\s*sep=(.)\s*", first.rstrip("\r"))
    if match:
        return rest, match.group(1), 1
    return text, None, 0


def map_headers(headers: list[str], fields: tuple[Field, ...]
                ) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """(field → column index, field → header as written, headers ignored)."""
    lookup: dict[str, tuple[str, int]] = {}
    for spec in fields:
        for rank, alias in enumerate(spec.aliases):
            lookup.setdefault(normalize_header(alias), (spec.name, rank))
    chosen: dict[str, tuple[int, int]] = {}  # field → (rank, index)
    for index, header in enumerate(headers):
        match = lookup.get(normalize_header(header))
        if match is None:
            continue
        name, rank = match
        if name not in chosen or rank < chosen[name][0]:
            chosen[name] = (rank, index)
    used = {index for _, index in chosen.values()}
    indexes = {name: index for name, (_, index) in chosen.items()}
    written = {name: headers[index].strip().replace("\ufeff", "")
               for name, index in indexes.items()}
    ignored = [header.strip() for index, header in enumerate(headers)
               if index not in used and header.strip()]
    return indexes, written, ignored


def read_table(data: bytes, fields: tuple[Field, ...]) -> Table:
    """Decode, split and map the file; every data row keeps its spreadsheet row number."""
    text, encoding = decode(data)
    text, delimiter, skipped = _lines(text)
    records: Iterator[list[str]]
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    if not header_line.strip():
        raise NoHeader()
    delimiter = delimiter or sniff_delimiter(header_line)
    records = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    number = skipped
    headers: list[str] | None = None
    rows: list[Row] = []
    indexes: dict[str, int] = {}
    table: Table | None = None
    for record in records:
        number += 1
        if headers is None:
            if not any(cell.strip() for cell in record):
                continue
            headers = record
            number = 1  # the header is row 1, whatever blank lines came before it
            indexes, written, ignored = map_headers(headers, fields)
            table = Table(encoding=encoding, delimiter=delimiter, columns=written,
                          ignored=ignored, header_width=len(headers))
            continue
        if not any(cell.strip() for cell in record):
            continue
        if len(rows) >= MAX_ROWS:
            raise TooManyRows(rows=str(MAX_ROWS))
        cells = {name: (record[index].strip() if index < len(record) else "")
                 for name, index in indexes.items()}
        extra = sum(1 for cell in record[len(headers):] if cell.strip())
        rows.append(Row(number=number, cells=cells, extra=extra))
    if table is None:
        raise NoHeader()
    table.rows = rows
    return table
