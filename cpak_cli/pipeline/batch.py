"""Batch measurement of a folder tree into one CSV (one row per leg, an error row per bad file).

Rows are written in input order and flushed + fsynced one file at a time, so an interruption
loses no finished row; ``resume=True`` skips inputs already in the CSV (a torn last line left by
a kill is cut off first). Decoding runs in worker processes while the main process runs the
networks on crops of several scans at once. Text cells that a spreadsheet would read as a
formula are prefixed with ``'`` (:func:`neutralise_cell`); resume compares inputs the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.landmarks import LANDMARKS, SIDES
from cpak_cli.errors import CpakError, CpakInputError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}

COLUMNS: tuple[str, ...] = (
    "input", "sha256", "sop_instance_uid", "study_date", "side",
    "ldfa", "mpta", "ahka", "jlo", "mhka", "cpak", "flags",
    "spacing_row_mm", "spacing_col_mm", "spacing_source", "box_source",
    *[f"{n}_{k}" for n in LANDMARKS for k in ("x", "y", "x_mm", "y_mm", "confidence")],
    "models", "tool_version", "error",
)


def find_inputs(root: Path, recursive: bool = False) -> list[Path]:
    """DICOM candidates under ``root``: files named ``*.dcm``/``*.dicom``/extension-less, or any
    file that starts like DICOM; sorted for a stable row order. Hidden files are skipped."""
    from cpak_cli.input.loader import is_probably_dicom

    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CpakInputError(root, "no such folder")
    it = root.rglob("*") if recursive else root.glob("*")
    out = []
    for p in it:
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.suffix.lower() in DICOM_SUFFIXES or is_probably_dicom(p):
            out.append(p)
    return sorted(out)


def salted_hash(value: str | None, salt: str) -> str:
    if not value:
        return ""
    return hashlib.sha256((salt + "\0" + value).encode("utf-8")).hexdigest()[:24]


@dataclass
class Decoded:
    """What a worker returns for one input: the loaded image or the error line."""

    path: str
    sha256: str
    image: Any | None
    error: str | None


def decode_one(args: tuple[str, tuple[float, float] | None]) -> Decoded:
    """Worker: hash and load one file (never raises for bad input). ``spacing`` is only used
    for files that have no spacing of their own."""
    path, spacing = args
    from cpak_cli.input.loader import load_image

    try:
        sha = file_sha256(path)
    except OSError as exc:
        return Decoded(path, "", None, f"{path}: cannot read file ({exc.__class__.__name__})")
    try:
        return Decoded(path, sha, load_image(path, fallback_spacing=spacing), None)
    except CpakError as exc:
        return Decoded(path, sha, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a batch
        return Decoded(path, sha, None, f"{path}: unexpected error {exc.__class__.__name__}: {exc}")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the CSV's audit column)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        if meta != _run_meta(anonymize_salt):
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


def run_batch(
    inputs: Sequence[Path],
    csv_path: Path,
    measurer: Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    chunk: int = 4,
    pixel_spacing: tuple[float, float] | None = None,
    anonymize_salt: str | None = None,
    overlays: Path | None = None,
    on_file: Callable[[BatchSummary], None] | None = None,
) -> BatchSummary:
    """Measure ``inputs`` into ``csv_path``; see the module docstring for the guarantees."""
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
    # the CSV holds inputs neutralised against formula injection: compare them the same way
    key = (lambda p: neutralise_cell(salted_hash(str(p), anonymize_salt))) if anonymize_salt is not None else (
        lambda p: neutralise_cell(str(p)))
    todo = []
    for p in inputs:
        if key(p) in done:
            summary.skipped += 1
        else:
            todo.append(p)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    with open(csv_path, "a", encoding="utf-8", newline="") as fh:
        if new_file:
            fh.write(_csv_text([], header=True))
            fh.flush()
            os.fsync(fh.fileno())
        for group in _chunks(_decoded(todo, workers, pixel_spacing), chunk):
            ok = [d for d in group if d.image is not None]
            results: dict[str, Any] = {}
            errors: dict[str, str] = {}
            if ok:
                try:
                    for d, r in zip(ok, measurer.measure_images([d.image for d in ok])):
                        results[d.path] = r
                except Exception:  # noqa: BLE001 - fall back to one at a time to isolate the bad one
                    for d in ok:
                        try:
                            results[d.path] = measurer.measure_images([d.image])[0]
                        except Exception as exc:  # noqa: BLE001
                            errors[d.path] = f"{d.path}: measurement failed ({exc.__class__.__name__}: {exc})"
            for d in group:
                res = results.get(d.path)
                err = d.error or errors.get(d.path)
                rows = rows_for(d, res, err, anonymize_salt)
                if overlays is not None and res is not None and res.legs:
                    try:
                        extra = _write_overlay(overlays, d, res, anonymize_salt)
                    except Exception:  # noqa: BLE001 - an overlay problem must not cost the rows
                        extra = ["overlay_not_written"]
                    for row in rows:
                        row["flags"] = ";".join(f for f in (row["flags"], *extra) if f)
                fh.write(_csv_text(rows, header=False))
                fh.flush()
                os.fsync(fh.fileno())
                summary.files += 1
                if err is not None or res is None or not res.legs:
                    summary.failed += 1
                else:
                    summary.legs += len(rows)
                if on_file is not None:
                    on_file(summary)
    return summary


def _write_overlay(folder: Path, dec: Decoded, res: Any, anonymize_salt: str | None) -> list[str]:
    """Write one overlay PNG; anonymized, the text burned into the film outside the legs' region
    is blanked first (:mod:`cpak_cli.outputs.redact`). Returns flags for the film's rows:
    ``overlay_text_in_legs`` when a text line reaches into the legs' region (that part is kept)."""
    from cpak_cli.outputs.overlay import overlay_for_result, write_png

    flags = []
    if anonymize_salt is not None:
        from cpak_cli.outputs.redact import redact_result

        res, redaction = redact_result(res)
        flags = ["overlay_text_in_legs"] if redaction.lines_in_legs else []
    name = (dec.sha256[:16] or Path(dec.path).name) + ".png"
    title = dec.path if anonymize_salt is None else salted_hash(dec.path, anonymize_salt)
    write_png(folder / name, overlay_for_result(res, title=title))
    return flags


def _decoded(paths: Sequence[Path], workers: int, spacing: tuple[float, float] | None) -> Iterator[Decoded]:
    """Decoded inputs in input order. With workers > 1 at most ``2 * workers`` files are in
    flight (memory stays bounded); a worker that dies (a crash in a decoder, out of memory)
    turns its file into an error row and the pool is restarted."""
    args = [(str(p), spacing) for p in paths]
    if workers <= 1 or len(args) <= 1:
        for a in args:
            yield decode_one(a)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    pending: deque = deque()
    nxt = 0
    try:
        while nxt < len(args) or pending:
            while nxt < len(args) and len(pending) < 2 * workers:
                pending.append((args[nxt], pool.submit(decode_one, args[nxt])))
                nxt += 1
            a, fut = pending.popleft()
            try:
                yield fut.result()
            except BrokenProcessPool:
                yield Decoded(a[0], "", None, f"{a[0]}: the decoder crashed on this file (worker process died)")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=ctx)
                redo = [x for x, _ in pending]
                pending.clear()
                for x in redo:
                    pending.append((x, pool.submit(decode_one, x)))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _chunks(it: Iterable[Decoded], n: int) -> Iterator[list[Decoded]]:
    group: list[Decoded] = []
    for d in it:
        group.append(d)
        if len(group) >= n:
            yield group
            group = []
    if group:
        yield group
