"""The batch CSV an auditor can trust: its columns, the rows of one film (numbers to 4 decimals,
text cells neutralised against formula injection, identifiers hashed under anonymization),
appending with flush + fsync one film at a time, and resuming (a torn last line and the last
input's rows are cut off; the run sidecar says how the CSV was made)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.landmarks import LANDMARKS, SIDES
from cpak_cli.core.measurement import leg_length_difference_mm
from cpak_cli.errors import CpakInputError
from cpak_cli.pipeline.decoding import Decoded

COLUMNS: tuple[str, ...] = (
    "input", "sha256", "sop_instance_uid", "study_date", "side",
    "ldfa", "mpta", "ahka", "jlo", "mhka", "cpak", "flags",
    "spacing_row_mm", "spacing_col_mm", "spacing_source", "box_source",
    *[f"{n}_{k}" for n in LANDMARKS for k in ("x", "y", "x_mm", "y_mm", "confidence")],
    "models", "tool_version", "error",
    # the alignment panel (appended so the earlier columns keep their places)
    "jlca", "mad_mm", "femur_mm", "tibia_mm", "leg_mm", "leg_length_difference_mm", "outside_normal",
)


def salted_hash(value: str | None, salt: str) -> str:
    if not value:
        return ""
    return hashlib.sha256((salt + "\0" + value).encode("utf-8")).hexdigest()[:24]


def _fmt(v: Any, digits: int = 4) -> str:
    """A CSV cell: floats with a fixed number of decimals so re-runs give identical rows."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}" if v == v else ""
    return str(v)


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise_cell(value: str) -> str:
    """A CSV cell safe to open in a spreadsheet: text that starts with ``= + - @``, a tab or a
    carriage return and is not a plain number gets a leading ``'`` (OWASP); numbers such as
    ``-2.0000`` and every other cell stay as they are."""
    if value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def input_cell(path: str | Path, anonymize_salt: str | None) -> str:
    """The ``input`` cell of a film's rows as the CSV holds it: the path (or its salted hash
    under ``--anonymize``), neutralised against formula injection (:func:`neutralise_cell`)."""
    return neutralise_cell(str(path) if anonymize_salt is None else salted_hash(str(path), anonymize_salt))


def rows_for(dec: Decoded, result: Any | None, error: str | None, anonymize_salt: str | None) -> list[dict[str, str]]:
    """CSV rows (as strings) of one input: one per leg, or one error row."""
    img = dec.image
    base = {
        "input": dec.path,
        "sha256": dec.sha256,
        "sop_instance_uid": getattr(img, "sop_instance_uid", None) or "",
        "study_date": getattr(img, "study_date", None) or "",
        "tool_version": __version__,
    }
    if anonymize_salt is not None:
        base["input"] = salted_hash(dec.path, anonymize_salt)
        base["sop_instance_uid"] = salted_hash(base["sop_instance_uid"], anonymize_salt)
        if error is not None:
            error = error.replace(dec.path, base["input"])
    if error is not None or result is None or not result.legs:
        row = {c: "" for c in COLUMNS}
        row.update(base)
        row["error"] = " ".join((error or "no leg found on the film").split())
        return [row]
    assert img is not None  # a result with legs was measured on a loaded image
    lld = leg_length_difference_mm(result.legs)  # film level: repeated on each leg's row
    rows = []
    for side in SIDES:
        leg = result.legs.get(side)
        if leg is None:
            continue
        row = {c: "" for c in COLUMNS}
        row.update(base)
        row.update(
            side=side, ldfa=_fmt(leg.ldfa), mpta=_fmt(leg.mpta), ahka=_fmt(leg.ahka), jlo=_fmt(leg.jlo),
            mhka=_fmt(leg.mhka), cpak=leg.cpak or "", flags=";".join(leg.flags),
            spacing_row_mm=_fmt(img.spacing_mm[0]), spacing_col_mm=_fmt(img.spacing_mm[1]),
            spacing_source=img.spacing_source, box_source=result.box_source,
            models=";".join(f"{k}={v}" for k, v in sorted(result.models.items())),
            error=leg.error or "",
            jlca=_fmt(leg.jlca), mad_mm=_fmt(leg.mad_mm), femur_mm=_fmt(leg.femur_mm), tibia_mm=_fmt(leg.tibia_mm),
            leg_mm=_fmt(leg.leg_mm), leg_length_difference_mm=_fmt(lld), outside_normal=";".join(leg.outside_normal),
        )
        for n, p in result.landmarks.get(side, {}).items():
            if p.found:
                row.update({f"{n}_x": _fmt(p.x), f"{n}_y": _fmt(p.y), f"{n}_x_mm": _fmt(p.x_mm),
                            f"{n}_y_mm": _fmt(p.y_mm)})
            row[f"{n}_confidence"] = _fmt(p.confidence)
        rows.append(row)
    return rows


def _csv_text(rows: Iterable[dict[str, str]], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows({k: neutralise_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)
    return buf.getvalue()


def done_inputs(csv_path: Path) -> set[str]:
    """Inputs finished in a CSV being resumed. A torn last line (kill during a write) and every
    row of the last input are cut off, so that input is measured again and none of its legs is
    lost. The inputs are returned as written (neutralised, see :func:`neutralise_cell`). Raises on
    a CSV with other columns or that is not UTF-8."""
    try:
        data = csv_path.read_bytes()
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CpakInputError(csv_path, f"cannot read the CSV to resume ({exc.__class__.__name__})") from None
    if not text:
        _truncate(csv_path, 0)
        return set()
    lines = text.splitlines(keepends=True)
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise CpakInputError(csv_path, "existing CSV has different columns; cannot resume into it")
    rows = list(reader)
    if len(rows) != len(lines) - 1:  # a field with a line break would break the line bookkeeping
        raise CpakInputError(csv_path, "existing CSV has multi-line fields; cannot resume into it")
    keep = len(rows)
    while keep and rows[keep - 1]["input"] == rows[-1]["input"]:
        keep -= 1
    _truncate(csv_path, len("".join(lines[: keep + 1]).encode("utf-8")))
    return {row["input"] for row in rows[:keep]}


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


def _run_meta(anonymize_salt: str | None) -> dict[str, Any]:
    return {"anonymized": anonymize_salt is not None,
            "salt_sha256": None if anonymize_salt is None else hashlib.sha256(anonymize_salt.encode()).hexdigest(),
            "columns": len(COLUMNS)}


def meta_path(csv_path: Path) -> Path:
    """Sidecar that records how a CSV was made, so --resume cannot mix modes or salts."""
    return csv_path.with_name(csv_path.name + ".run.json")


def check_output(csv_path: Path, resume: bool, overwrite: bool, anonymize_salt: str | None = None) -> None:
    """Fail early (before any model is loaded) when the output cannot be written as asked."""
    if csv_path.is_dir():
        raise CpakInputError(csv_path, "is a directory; --csv needs a file name")
    if csv_path.exists() and not (resume or overwrite):
        raise CpakInputError(csv_path, "CSV exists; pass --resume to continue it or --overwrite to replace it")
    if resume and csv_path.exists():
        mp = meta_path(csv_path)
        try:
            meta = json.loads(mp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise CpakInputError(csv_path, f"cannot resume: {mp.name} (how the CSV was made) is missing or unreadable") from None
        now = _run_meta(anonymize_salt)
        if meta.get("columns") != now["columns"]:
            raise CpakInputError(
                csv_path, f"cannot resume: the CSV has {meta.get('columns')} columns and this version writes "
                f"{now['columns']} (made by another cpak version); start a new CSV")
        if meta != now:
            raise CpakInputError(csv_path, "cannot resume: the CSV was made with a different --anonymize/--salt setting")


@dataclass
class BatchSummary:
    """Running counts of a batch: ``files`` measured or failed so far, ``skipped`` (already in the
    CSV on resume), ``failed`` (error rows), ``legs`` (leg rows), ``total`` (inputs found)."""

    total: int = 0
    files: int = 0
    skipped: int = 0
    failed: int = 0
    legs: int = 0


def pending_inputs(
    inputs: Sequence[Path], csv_path: Path, resume: bool, overwrite: bool, anonymize_salt: str | None
) -> tuple[list[Path], BatchSummary]:
    """The inputs still to measure (input order) and a summary counting the skipped ones.

    Checks the output (:func:`check_output`), cuts a resumed CSV back to its last finished input
    (:func:`done_inputs`), removes a CSV being overwritten and writes the run sidecar
    (:func:`meta_path`). Raises :class:`CpakInputError` as :func:`check_output` does."""
    summary = BatchSummary(total=len(inputs))
    done: set[str] = set()
    check_output(csv_path, resume, overwrite, anonymize_salt)
    if csv_path.exists():
        if resume:
            done = done_inputs(csv_path)
        else:
            csv_path.unlink()
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        atomic_write_text(meta_path(csv_path), json.dumps(_run_meta(anonymize_salt)) + "\n")
    todo = []
    for p in inputs:
        if input_cell(p, anonymize_salt) in done:  # the CSV holds inputs neutralised: compare them so
            summary.skipped += 1
        else:
            todo.append(p)
    return todo, summary


def open_csv(csv_path: Path) -> TextIO:
    """``csv_path`` opened for appending rows; the header is written (and synced) when it is new."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    fh = open(csv_path, "a", encoding="utf-8", newline="")
    if new_file:
        fh.write(_csv_text([], header=True))
        fh.flush()
        os.fsync(fh.fileno())
    return fh


def write_film(fh: TextIO, rows: Sequence[dict[str, str]], failed: bool, summary: BatchSummary) -> None:
    """Append one film's rows, flush and fsync (no finished row is lost to a kill); count it."""
    fh.write(_csv_text(rows, header=False))
    fh.flush()
    os.fsync(fh.fileno())
    summary.files += 1
    if failed:
        summary.failed += 1
    else:
        summary.legs += len(rows)
