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
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

from cpak_cli import __version__
from cpak_cli.atomic import atomic_write_text
from cpak_cli.core.landmarks import LANDMARKS, SIDES
from cpak_cli.core.measurement import leg_length_difference_mm
from cpak_cli.errors import CpakError, CpakInputError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}

COLUMNS: tuple[str, ...] = (
    "input", "sha256", "sop_instance_uid", "study_date", "side",
    "ldfa", "mpta", "ahka", "jlo", "mhka", "cpak", "flags",
    "spacing_row_mm", "spacing_col_mm", "spacing_source", "box_source",
    *[f"{n}_{k}" for n in LANDMARKS for k in ("x", "y", "x_mm", "y_mm", "confidence")],
    "models", "tool_version", "error",
    # the alignment panel (appended so the earlier columns keep their places)
    "jlca", "mad_mm", "femur_mm", "tibia_mm", "leg_mm", "leg_length_difference_mm", "outside_normal",
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
    """Hash and open one file (never raises for bad input). ``spacing`` is only used for files
    that have no spacing of their own. The film is decoded in the process's decode cage
    (:func:`cpak_cli.input.cage.open_caged`: a worker process with a time and memory limit; a
    crash, hang or memory bomb gives the film an error row). A JPEG 2000 film that can be decoded
    piecewise comes back as a :class:`~cpak_cli.input.film_source.FilmSource` holding its
    codestream and the detector's reduced view; its joint windows are decoded later, in the
    cage's workers, not as a float32 copy of the whole film."""
    path, spacing = args
    from cpak_cli.input.cage import open_caged

    try:
        sha = file_sha256(path)
    except OSError as exc:
        return Decoded(path, "", None, f"{path}: cannot read file ({exc.__class__.__name__})")
    try:
        return Decoded(path, sha, open_caged(path, fallback_spacing=spacing), None)
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
    sr_dir: Path | None = None,
    on_file: Callable[[BatchSummary], None] | None = None,
    on_result: Callable[[Decoded, Any | None], None] | None = None,
) -> BatchSummary:
    """Measure ``inputs`` into ``csv_path``; see the module docstring for the guarantees.

    ``measurer`` is a :class:`~cpak_cli.pipeline.film.Measurer` (anything with
    ``measure_images``) or a factory returning one, called once the first films are being
    decoded, so that loading the models and decoding overlap. With ``overlays`` / ``sr_dir`` each
    film with a leg also gets an overlay PNG / a DICOM SR (:func:`sr_name`) there; a film whose
    file cannot be written keeps its rows, flagged ``overlay_not_written`` / ``sr_not_written``.

    ``on_file(summary)`` is called after each film's rows are written; ``on_result(decoded,
    result)`` just before, with the film's :class:`Decoded` and its ``ScanResult`` (None when it
    could not be decoded or measured), e.g. to keep a thumbnail (it must not raise)."""
    todo, summary = pending_inputs(inputs, csv_path, resume, overwrite, anonymize_salt)
    decoded = _decoded(todo, workers, pixel_spacing)  # the first films decode while the models load
    if not hasattr(measurer, "measure_images"):  # a factory: load the models now
        measurer = measurer()
    with open_csv(csv_path) as fh:
        for group in _chunks(decoded, chunk):
            results, errors = measure_group(measurer, group)
            for d in group:
                rows, failed = film_rows(d, results.get(d.path), errors.get(d.path), anonymize_salt,
                                         overlays=overlays, sr_dir=sr_dir, on_result=on_result)
                write_film(fh, rows, failed, summary)
                if on_file is not None:
                    on_file(summary)
    return summary


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


def measure_group(measurer: Any, group: Sequence[Decoded]) -> tuple[dict[str, Any], dict[str, str]]:
    """Measure the decoded films of ``group`` in one call (crops share forward passes); when that
    fails, one at a time so that only the bad film gets an error. Returns the results and the
    one-line errors, by input path (films that failed to decode are in neither)."""
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
                except CpakInputError as exc:  # the film's decoder failed (the decode cage's one line)
                    errors[d.path] = str(exc)
                except Exception as exc:  # noqa: BLE001
                    errors[d.path] = f"{d.path}: measurement failed ({exc.__class__.__name__}: {exc})"
    return results, errors


def film_rows(
    d: Decoded, res: Any | None, error: str | None, anonymize_salt: str | None, *,
    overlays: Path | None = None, sr_dir: Path | None = None,
    on_result: Callable[[Decoded, Any | None], None] | None = None,
) -> tuple[list[dict[str, str]], bool]:
    """The CSV rows of one film (:func:`rows_for`) and whether they are an error row.

    ``on_result(d, res)`` is called first (e.g. a thumbnail); a film with a leg gets its overlay
    PNG in ``overlays`` and its DICOM SR in ``sr_dir`` when set: a file that cannot be written
    flags the rows (``overlay_not_written`` / ``sr_not_written``), never loses them."""
    err = d.error or error
    rows = rows_for(d, res, err, anonymize_salt)
    if on_result is not None:
        on_result(d, res)
    for folder, write_file, flag in ((overlays, _write_overlay, "overlay_not_written"),
                                     (sr_dir, _write_sr, "sr_not_written")):
        if folder is None or res is None or not res.legs:
            continue
        try:
            extra = write_file(folder, d, res, anonymize_salt) or []
        except Exception:  # noqa: BLE001 - an output problem must not cost the rows
            extra = [flag]
        for row in rows:
            row["flags"] = ";".join(f for f in (row["flags"], *extra) if f)
    return rows, err is not None or res is None or not res.legs


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


def sr_name(dec: Decoded, anonymize_salt: str | None) -> str:
    """File name of a film's SR in ``--sr-dir``: ``<input stem>_<first 12 hex of its sha256>.dcm``
    (distinct for films of the same name in different folders), or under anonymization the
    input's salted hash (the CSV's ``input`` column) + ``.dcm``."""
    if anonymize_salt is not None:
        return salted_hash(dec.path, anonymize_salt) + ".dcm"
    return f"{Path(dec.path).stem}_{dec.sha256[:12]}.dcm"


def _write_sr(folder: Path, dec: Decoded, res: Any, anonymize_salt: str | None) -> list[str]:
    from cpak_cli.outputs.sr import write_sr

    write_sr(folder / sr_name(dec, anonymize_salt), res, dec.path, anonymize_salt=anonymize_salt)
    return []


def _decoded(paths: Sequence[Path], workers: int, spacing: tuple[float, float] | None) -> Iterator[Decoded]:
    """Decoded inputs in input order (:func:`decode_one`). With workers > 1 that many files are
    opened at once, each in one of the decode cage's worker processes (at most ``2 * workers``
    in flight, so memory stays bounded); a worker that dies, hangs or runs out of memory turns
    its file into an error row and is replaced."""
    args = [(str(p), spacing) for p in paths]
    if workers <= 1 or len(args) <= 1:
        return (decode_one(a) for a in args)
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from cpak_cli.input.cage import default_cage

    default_cage().ensure(workers)
    pool = ThreadPoolExecutor(workers)
    pending: deque = deque(pool.submit(decode_one, a) for a in args[: 2 * workers])  # start at once
    return _in_order(pool, pending, args[2 * workers :])


def _in_order(pool: Any, pending: Any, rest: Sequence[tuple[str, Any]]) -> Iterator[Decoded]:
    """The results of ``pending`` futures in order, keeping as many in flight with ``rest``."""
    nxt = 0
    try:
        while nxt < len(rest) or pending:
            if nxt < len(rest):
                pending.append(pool.submit(decode_one, rest[nxt]))
                nxt += 1
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=False)


def _chunks(it: Iterable[Decoded], n: int) -> Iterator[list[Decoded]]:
    group: list[Decoded] = []
    for d in it:
        group.append(d)
        if len(group) >= n:
            yield group
            group = []
    if group:
        yield group
