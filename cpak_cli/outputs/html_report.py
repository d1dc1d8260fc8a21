"""`cpak batch --report`: one self-contained HTML file that summarises a batch CSV.

The report is built from the CSV's rows (so after ``--resume`` it covers every film of the CSV,
earlier runs included): counts of films, legs, errors and flags; the CPAK grid with one point per
measured leg (:mod:`cpak_cli.outputs.charts`); histograms of LDFA and MPTA; and one card per
film, failed and flagged films first, with its overlay thumbnail, its numbers and flags.

Thumbnails are JPEG overlays kept in a sidecar folder next to the CSV (``OUT.csv.thumbs/``,
:func:`thumbnail_dir`), one per film named after the film's CSV ``input`` cell and file hash,
written during the batch by :class:`ThumbnailWriter` and embedded (base64) when the report is
written; a film without one says why. Under ``--anonymize`` no thumbnail is kept until burned-in
text can be removed (:func:`thumbnail_pixels` is the one place where that redaction goes).

The file makes no network request: no external CSS, scripts, fonts or images, and a
Content-Security-Policy that forbids them. Every text that comes from a file (names, header
values in error messages) is HTML-escaped. Angles are degrees.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_bytes, atomic_write_text
from cpak_cli.core.cpak import display_angles
from cpak_cli.core.panel import NORMAL_RANGES
from cpak_cli.errors import CpakInputError
from cpak_cli.outputs.charts import GridPoint, cpak_grid_svg, histogram_svg
from cpak_cli.outputs.flags import removes_type

if TYPE_CHECKING:  # pragma: no cover
    from cpak_cli.pipeline.decoding import Decoded
    from cpak_cli.pipeline.result import ScanResult

#: Rows of a thumbnail (the overlay drawn at this height; text scales with it) and JPEG quality.
THUMB_HEIGHT = 900
THUMB_QUALITY = 80

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def thumbnail_dir(csv_path: str | Path) -> Path:
    """The sidecar folder of a batch CSV's thumbnails: ``OUT.csv.thumbs`` next to it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".thumbs")


def thumbnail_name(input_cell: str, sha256: str) -> str:
    """File name of a film's thumbnail from its CSV ``input`` cell and ``sha256`` cell (a hash of
    both, so a changed file or another film never picks up an old picture)."""
    return hashlib.sha256(f"{input_cell}\0{sha256}".encode()).hexdigest()[:24] + ".jpg"


def clear_thumbnails(csv_path: str | Path) -> None:
    """Remove the thumbnails of an earlier CSV of that name (a fresh, not resumed, batch)."""
    folder = thumbnail_dir(csv_path)
    if folder.is_dir():
        for p in folder.glob("*.jpg"):
            p.unlink(missing_ok=True)


def thumbnail_pixels(result: ScanResult, anonymized: bool) -> np.ndarray | None:
    """The thumbnail of a measured film (BGR, :data:`THUMB_HEIGHT` rows, no title). Under
    ``anonymized`` it is drawn on the film with its burned-in text (names, IDs) outside the legs
    blanked (:func:`cpak_cli.outputs.redact.redact_result`, as the batch's overlay PNGs)."""
    from cpak_cli.outputs.overlay import overlay_for_result

    if anonymized:
        from cpak_cli.outputs.redact import redact_result

        result, _ = redact_result(result)
    return overlay_for_result(result, max_height=THUMB_HEIGHT, title="")


@dataclass
class ThumbnailWriter:
    """The ``on_result`` callback of :func:`cpak_cli.pipeline.batch.run_batch` that keeps one
    thumbnail per film in :func:`thumbnail_dir` (atomically). A film without a measured leg, or
    whose thumbnail may not be kept, loses any old thumbnail of its name; a thumbnail that cannot
    be drawn is recorded in ``failed`` (name -> reason) and never stops the batch."""

    csv_path: Path
    anonymize_salt: str | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def __call__(self, dec: Decoded, result: ScanResult | None) -> None:
        from cpak_cli.pipeline.batch_csv import input_cell

        path = thumbnail_dir(self.csv_path) / thumbnail_name(input_cell(dec.path, self.anonymize_salt), dec.sha256)
        try:
            bgr = None
            if result is not None and result.legs and result.image is not None:
                bgr = thumbnail_pixels(result, self.anonymize_salt is not None)
            if bgr is None:
                path.unlink(missing_ok=True)
                return
            import cv2

            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
            if not ok:
                raise ValueError("JPEG encoding failed")
            atomic_write_bytes(path, buf.tobytes())
        except Exception as exc:  # noqa: BLE001 - a thumbnail must never cost the film's rows
            path.unlink(missing_ok=True)
            self.failed[path.name] = f"{exc.__class__.__name__}: {exc}"


@dataclass
class Film:
    """The CSV rows of one input: ``legs`` (rows with a side) or the error row of a failed film."""

    input: str
    sha256: str
    rows: list[dict[str, str]]

    @property
    def legs(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r.get("side")]

    @property
    def error(self) -> str:
        return "" if self.legs else "; ".join(r.get("error", "") for r in self.rows if r.get("error"))

    @property
    def status(self) -> str:
        """``failed`` (no leg row), ``flagged`` (a leg with flags, not fully measured or untyped)
        or ``ok``."""
        if not self.legs:
            return "failed"
        if any(r.get("flags") or r.get("error") or not r.get("cpak") for r in self.legs):
            return "flagged"
        return "ok"


def read_films(csv_path: str | Path) -> list[Film]:
    """The films of a batch CSV in row order (consecutive rows of one ``input`` are one film).

    Raises:
        CpakInputError: the CSV cannot be read or is not a batch CSV.
    """
    try:
        text = Path(csv_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CpakInputError(csv_path, f"cannot read the CSV for the report ({exc.__class__.__name__})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not {"input", "sha256", "side", "ldfa", "mpta", "flags", "error"} <= set(reader.fieldnames or ()):
        raise CpakInputError(csv_path, "not a cpak batch CSV (columns missing)")
    films: list[Film] = []
    for row in reader:
        if films and films[-1].input == row["input"] and films[-1].sha256 == row["sha256"]:
            films[-1].rows.append(row)
        else:
            films.append(Film(row["input"], row["sha256"], [row]))
    return films


def _num(row: dict[str, str], key: str) -> float | None:
    try:
        v = float(row.get(key) or "nan")
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def shown_cells(row: dict[str, str]) -> dict[str, str]:
    """LDFA, MPTA, aHKA, JLO and mHKA cells of a leg row to 0.1 degree as the tables print them
    (aHKA and JLO from the rounded LDFA and MPTA, so they add up); ``-`` where missing."""
    vals = {k: _num(row, k) for k in ("ldfa", "mpta", "ahka", "jlo", "mhka")}
    if vals["ldfa"] is not None and vals["mpta"] is not None:
        ldfa, mpta, ahka, jlo = display_angles(vals["ldfa"], vals["mpta"])
        vals.update(ldfa=ldfa, mpta=mpta)
        if vals["ahka"] is not None and vals["jlo"] is not None:
            vals.update(ahka=ahka, jlo=jlo)
    return {k: "-" if v is None else f"{v:.1f}" for k, v in vals.items()}


def _flags(row: dict[str, str]) -> list[str]:
    return [f for f in (row.get("flags") or "").split(";") if f]


def _badge(flag: str) -> str:
    cls = "bad" if removes_type(flag) else "info"
    return f'<span class="flag {cls}">{escape(flag)}</span>'


def grid_points(films: list[Film]) -> list[GridPoint]:
    """One grid point per measured leg (a leg row with aHKA and JLO and no error)."""
    points = []
    for film in films:
        for row in film.legs:
            ahka, jlo = _num(row, "ahka"), _num(row, "jlo")
            if ahka is None or jlo is None or row.get("error"):
                continue
            flags = _flags(row)
            kind = "untyped" if any(removes_type(f) for f in flags) or not row.get("cpak") else (
                "info" if flags else "none")
            cells = shown_cells(row)
            label = (f"{film.input} {row['side']}: aHKA {cells['ahka']} JLO {cells['jlo']} CPAK "
                     f"{row.get('cpak') or '-'}" + (f" [{', '.join(flags)}]" if flags else ""))
            points.append(GridPoint(ahka, jlo, kind, label))
    return points


def _summary(films: list[Film]) -> str:
    legs = [r for f in films for r in f.legs]
    measured = sum(1 for r in legs if not r.get("error") and _num(r, "ahka") is not None)
    flag_counts = Counter(flag for r in legs for flag in _flags(r))
    status = Counter(f.status for f in films)
    items = [("films", len(films)), ("films failed (error row)", status["failed"]),
             ("films flagged", status["flagged"]), ("leg rows", len(legs)), ("legs measured", measured),
             ("legs partly measured", sum(1 for r in legs if r.get("error"))),
             ("legs with a CPAK type", sum(1 for r in legs if r.get("cpak")))]
    out = ['<table class="summary"><tbody>']
    out += [f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in items]
    out.append("</tbody></table>")
    if flag_counts:
        out.append('<table class="flags"><thead><tr><th>flag</th><th>legs</th></tr></thead><tbody>')
        out += [f"<tr><td>{_badge(k)}</td><td>{v}</td></tr>" for k, v in sorted(flag_counts.items())]
        out.append("</tbody></table>")
    else:
        out.append("<p>No leg is flagged.</p>")
    return "".join(out)


def _thumbnail_html(film: Film, folder: Path, anonymized: bool) -> str:
    if film.status == "failed":
        return '<div class="nothumb">no overlay: the film was not measured</div>'
    path = folder / thumbnail_name(film.input, film.sha256)
    try:
        data = path.read_bytes()
    except OSError:
        return ('<div class="nothumb">thumbnail missing: not kept for this film (measured in a run without '
                "--report, or it could not be drawn)</div>")
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img class="thumb" alt="overlay of {escape(film.input)}" src="data:image/jpeg;base64,{b64}">'


def _film_card(film: Film, folder: Path, anonymized: bool) -> str:
    rows = film.rows[0]
    meta = [f"sha256 {escape(film.sha256[:16])}" if film.sha256 else "",
            f"study date {escape(rows.get('study_date', ''))}" if rows.get("study_date") else "",
            f"spacing {escape(rows.get('spacing_row_mm', ''))} x {escape(rows.get('spacing_col_mm', ''))} mm "
            f"({escape(rows.get('spacing_source', ''))})" if rows.get("spacing_row_mm") else ""]
    out = [f'<section class="film {film.status}"><div class="thumbbox">{_thumbnail_html(film, folder, anonymized)}'
           f'</div><div class="info"><h3><span class="status {film.status}">{film.status}</span> '
           f'{escape(film.input)}</h3><p class="meta">{" &middot; ".join(m for m in meta if m)}</p>']
    if film.error:
        out.append(f'<p class="error">{escape(film.error)}</p>')
    if film.legs:
        out.append('<table class="legs"><thead><tr><th>leg</th><th>LDFA</th><th>MPTA</th><th>aHKA</th><th>JLO</th>'
                   "<th>mHKA</th><th>CPAK</th></tr></thead><tbody>")
        for row in film.legs:
            c = shown_cells(row)
            out.append(f"<tr><td>{escape(row['side'])}</td><td>{c['ldfa']}</td><td>{c['mpta']}</td>"
                       f"<td>{c['ahka']}</td><td>{c['jlo']}</td><td>{c['mhka']}</td>"
                       f"<td>{escape(row.get('cpak') or '-')}</td></tr>")
            if _flags(row) or row.get("error"):  # flags and why a leg is not measured: a row of their own
                err = f'<div class="error">{escape(row["error"])}</div>' if row.get("error") else ""
                out.append(f'<tr class="legflags"><td colspan="7">{" ".join(_badge(f) for f in _flags(row))}'
                           f"{err}</td></tr>")
        out.append("</tbody></table>")
    out.append("</div></section>")
    return "".join(out)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}h3{font-size:14px;margin:0 0 4px;
word-break:break-all}.sub{color:#555;font-size:13px;margin:0 0 6px}.notice{background:#fff4d6;border:1px solid
#e0b84c;padding:6px 10px;font-size:13px}.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.col{display:flex;flex-direction:column;gap:10px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}
table.legs td:nth-child(n+2):nth-child(-n+6){text-align:right;font-variant-numeric:tabular-nums}
tr.legflags td{border-top:none;background:#fafafa}
.flag{display:inline-block;border-radius:3px;padding:0 5px;margin:1px 2px;font-size:12px}
.flag.bad{background:#fbe0e0;color:#a00;border:1px solid #d62728}.flag.info{background:#fff1d0;color:#8a5a00;
border:1px solid #e69f00}.films{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:14px}
.film{display:flex;gap:12px;border:1px solid #ccc;border-left:6px solid #2ca02c;padding:8px;border-radius:4px}
.film.flagged{border-left-color:#e69f00}.film.failed{border-left-color:#d62728}
.thumbbox{flex:0 0 auto}.thumb{height:460px;width:auto;display:block;background:#000}
.nothumb{width:160px;height:120px;border:1px dashed #999;color:#666;font-size:12px;padding:8px;box-sizing:border-box}
.info{min-width:0}.meta{color:#666;font-size:12px;margin:0 0 6px}.error{color:#a00;font-size:12px;margin:3px 0}
.status{font-size:11px;text-transform:uppercase;padding:1px 5px;border-radius:3px;color:#fff;background:#2ca02c}
.status.flagged{background:#c47f00}.status.failed{background:#d62728}
"""


def render_report(films: list[Film], thumbs: Path, *, title: str, anonymized: bool) -> str:
    """The report's HTML text for ``films`` (see the module docstring); ``thumbs`` is the
    thumbnail folder and ``title`` names the CSV (escaped here)."""
    order = {"failed": 0, "flagged": 1, "ok": 2}
    cards = sorted(films, key=lambda f: order[f.status])  # stable: CSV order within a status
    legs = [r for f in films for r in f.legs]
    versions = sorted({r.get("tool_version", "") for f in films for r in f.rows} - {""})
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notices = []
    if anonymized:
        notices.append("Anonymized batch: inputs are salted hashes; text burned into the films outside the legs "
                       "is blanked in the thumbnails, as far as it is found (README: De-identification).")
    ldfa = [v for r in legs if (v := _num(r, "ldfa")) is not None]
    mpta = [v for r in legs if (v := _num(r, "mpta")) is not None]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>cpak batch report: {escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>cpak batch report</h1><p class=\"sub\">{escape(title)} &middot; written {generated} by cpak-cli "
        f"{escape(__version__)} &middot; rows measured by cpak-cli {escape(', '.join(versions) or '-')}</p>",
        *(f'<p class="notice">{escape(n)}</p>' for n in notices),
        "<p class=\"sub\">Numbers are the CSV's, to 0.1 degree as the tables print them (aHKA = MPTA - LDFA, "
        "JLO = MPTA + LDFA from the printed values); the CPAK type is the CSV's (decided on full precision). "
        'Red flags take the CPAK type away; amber flags are informational.</p>',
        '<h2>Summary</h2><div class="row">', _summary(films), "</div>",
        '<h2>CPAK distribution</h2><div class="row">',
        cpak_grid_svg(grid_points(films)),
        '<div class="col">', histogram_svg(ldfa, "LDFA", NORMAL_RANGES["ldfa"]),
        histogram_svg(mpta, "MPTA", NORMAL_RANGES["mpta"]),
        "</div></div>",
        "<h2>Films</h2><p class=\"sub\">Failed and flagged films first.</p><div class=\"films\">",
        *(_film_card(f, thumbs, anonymized) for f in cards),
        "</div></body></html>\n",
    ]
    return "".join(parts)


def write_report(csv_path: str | Path, report_path: str | Path, anonymized: bool = False) -> Path:
    """Write the HTML report of the batch CSV ``csv_path`` to ``report_path`` (atomically), with
    the thumbnails of :func:`thumbnail_dir`.

    Raises:
        CpakInputError: the CSV cannot be read or is not a batch CSV.
    """
    csv_path = Path(csv_path)
    films = read_films(csv_path)
    html_text = render_report(films, thumbnail_dir(csv_path), title=csv_path.name, anonymized=anonymized)
    return atomic_write_text(report_path, html_text)


def check_report_path(report_path: str | Path, csv_path: str | Path) -> None:
    """Fail early (before any film is measured) when the report cannot be written there.

    Raises:
        CpakInputError: the path is a folder or the CSV itself.
    """
    report_path = Path(report_path)
    if report_path.is_dir():
        raise CpakInputError(report_path, "is a directory; --report needs a file name (e.g. report.html)")
    if report_path.resolve() == Path(csv_path).resolve():
        raise CpakInputError(report_path, "--report must not be the CSV itself")
