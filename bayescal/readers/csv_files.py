"""CSV files as users have them: compressed (``.gz``, ``.bz2``, ``.xz``), zipped (one CSV, or a
FLUXNET2015 download whose daily file is taken), saved by a spreadsheet (a byte-order mark, spaces
after the commas, semicolons), or with comment lines before the header (AmeriFlux BASE files).

:func:`open_text` is the one way the readers open such a file as text; :func:`read_csv_file`
reads it into a DataFrame, a file it cannot read being a :class:`ReaderError` that names the file
(and the config key that named it) and what to do.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..observations.products import ObservationError

__all__ = ["ReaderError", "open_text", "read_csv_file", "zip_member"]

_COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: Missing-value codes of flux files: FLUXNET2015/ONEFlux and AmeriFlux -9999, older AmeriFlux -6999.
FILL_VALUES = (-9999.0, -6999.0)


class ReaderError(ObservationError):
    """A problem with an observation or driver file; the message names the file (and key)."""


@contextlib.contextmanager
def open_text(path: Path, where: str, errors: str = "strict") -> Iterator[io.TextIOBase]:
    """``path`` as UTF-8 text (a byte-order mark dropped): decompressed if it ends ``.gz``,
    ``.bz2`` or ``.xz``; of a ``.zip``, its one CSV file, or of a FLUXNET2015 download its one
    daily file (``..._FULLSET_DD_...`` or ``..._SUBSET_DD_...``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as zf, zf.open(_zip_member(zf, where)) as raw, \
                    io.TextIOWrapper(raw, encoding="utf-8-sig", errors=errors) as fh:
                yield fh
        elif suffix in _COMPRESSED:
            with _COMPRESSED[suffix](path, "rt", encoding="utf-8-sig", errors=errors) as fh:
                yield fh
        else:
            with open(path, encoding="utf-8-sig", errors=errors) as fh:
                yield fh
    except (zipfile.BadZipFile, gzip.BadGzipFile, lzma.LZMAError, zlib.error, EOFError) as err:
        raise ReaderError(f"{where}: not a readable {suffix[1:]} file ({err})") from None
    except OSError as err:
        if "Invalid data stream" in str(err) or "compressed" in str(err).lower():  # bz2's word for it
            raise ReaderError(f"{where}: not a readable {suffix[1:]} file ({err})") from None
        raise


def zip_member(path: Path) -> str | None:
    """The name of the CSV file :func:`open_text` reads in the zip at ``path``; None for a file
    that is not a zip, or a zip it cannot read."""
    if path.suffix.lower() != ".zip":
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return _zip_member(zf, str(path))
    except (OSError, zipfile.BadZipFile, ReaderError):
        return None


def _zip_member(zf: zipfile.ZipFile, where: str) -> str:
    """The CSV file of a zip to read: its only one, or a FLUXNET2015 download's daily file."""
    csv = [i.filename for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith(".csv")
           and not i.filename.startswith("__MACOSX/") and not Path(i.filename).name.startswith("._")]
    if len(csv) == 1:
        return csv[0]
    daily = [n for n in csv if re.search(r"_(FULLSET|SUBSET)_DD_", Path(n).name, flags=re.IGNORECASE)]
    if len(daily) == 1:
        return daily[0]
    shown = ", ".join(Path(n).name for n in csv[:6]) + (", ..." if len(csv) > 6 else "")
    raise ReaderError(f"{where}: the zip holds {len(csv)} CSV files ({shown or 'none'}), and not one daily "
                      "file FLX_<site>_FLUXNET2015_<FULLSET|SUBSET>_DD_<years>_<v>.csv to read: give the "
                      "CSV file itself (extract it from the zip)")


def read_csv_file(path: Path, where: str, what: str) -> pd.DataFrame:
    """``path`` as a DataFrame, ``-9999`` (and ``-6999``) as NaN; a missing or unreadable file is
    a ReaderError naming ``where`` and saying it is not ``what``."""
    if not path.is_file():
        raise ReaderError(f"{where}: file not found")
    try:  # a spreadsheet's CSV: spaces after the commas, a byte-order mark before the header
        with open_text(path, where) as fh:
            df = pd.read_csv(fh, na_values=[str(int(v)) for v in FILL_VALUES], skipinitialspace=True)
        df = df.rename(columns=lambda c: c.strip() if isinstance(c, str) else c)
    except ReaderError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        _refuse_other_separators(path, where)
        text = str(err).strip()
        first = _first_line(path, where)
        if first.startswith("#"):
            hint = (f"; it starts with comment lines ({first[:40]!r}): an AmeriFlux BASE file? bayescal "
                    "reads files whose first line names the columns (FLUXNET2015 and ONEFlux files, "
                    "FLX_<site>_..._DD_...)")
        elif "Expected" in text and "fields" in text:
            hint = "; a decimal comma (2,5) splits a number in two: write 2.5, or quote the cell"
        else:
            hint = ""
        raise ReaderError(f"{where}: not {what} ({text}){hint}") from None
    if len(df.columns) == 1:
        _refuse_other_separators(path, where)
    return df


def _first_line(path: Path, where: str) -> str:
    try:
        with open_text(path, where, errors="replace") as fh:
            return fh.readline().strip()
    except (OSError, ReaderError):
        return ""


def _refuse_other_separators(path: Path, where: str) -> None:
    """A ReaderError for a header of one column holding semicolons or tabs: a spreadsheet saved as
    CSV in a locale that separates columns so (and writes decimal commas)."""
    header = _first_line(path, where)
    sep = next((name for c, name in ((";", "semicolons"), ("\t", "tabs")) if c in header), None)
    if sep and "," not in header:
        raise ReaderError(f"{where}: its columns are separated by {sep} (its header is {header[:60]!r}); "
                          "bayescal reads comma-separated files: save it as CSV with commas and decimal "
                          "points")
