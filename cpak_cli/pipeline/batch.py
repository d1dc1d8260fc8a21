"""Batch measurement of a folder tree into one CSV (one row per leg, an error row per bad file).

Rows are written in input order and flushed + fsynced one file at a time, so an interruption
loses no finished row; ``resume=True`` skips inputs already in the CSV (a torn last line left by
a kill is cut off first). Decoding runs in worker processes while the main process runs the
networks on crops of several scans at once. Text cells that a spreadsheet would read as a
formula are prefixed with ``'`` (:func:`neutralise_cell`); resume compares inputs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cpak_cli.errors import CpakInputError
from cpak_cli.options import BatchOptions
from cpak_cli.pipeline.batch_csv import BatchSummary, open_csv, pending_inputs, rows_for, salted_hash, write_film
from cpak_cli.pipeline.decoding import Decoded, _chunks, _decoded


def run_batch(
    inputs: Sequence[Path],
    csv_path: Path,
    measurer: Any,
    options: BatchOptions = BatchOptions(workers=1),
    *,
    pixel_spacing: tuple[float, float] | None = None,
    on_file: Callable[[BatchSummary], None] | None = None,
    on_result: Callable[[Decoded, Any | None], None] | None = None,
) -> BatchSummary:
    """Measure ``inputs`` into ``csv_path``; see the module docstring for the guarantees.

    ``measurer`` is a :class:`~cpak_cli.pipeline.film.Measurer` (anything with
    ``measure_images``) or a factory returning one, called once the first films are being
    decoded, so that loading the models and decoding overlap. ``options`` (:class:`~cpak_cli.options.BatchOptions`)
    gives ``resume``, ``overwrite``, ``workers``, ``chunk``, ``anonymize_salt``, ``overlays`` and
    ``sr_dir``; ``pixel_spacing`` is used for files without a spacing. With ``overlays`` / ``sr_dir`` each
    film with a leg also gets an overlay PNG / a DICOM SR (:func:`sr_name`) there; a film whose
    file cannot be written keeps its rows, flagged ``overlay_not_written`` / ``sr_not_written``.

    ``on_file(summary)`` is called after each film's rows are written; ``on_result(decoded,
    result)`` just before, with the film's :class:`Decoded` and its ``ScanResult`` (None when it
    could not be decoded or measured), e.g. to keep a thumbnail (it must not raise). The
    measurer's ``finish`` / ``measure_images`` are called with ``release=False``: a group's
    films are released (:func:`release_group`) after their rows and outputs are written, so an
    overlay reads the pixels a decode worker holds instead of decoding the film again."""
    o = options
    todo, summary = pending_inputs(inputs, csv_path, o.resume, o.overwrite, o.anonymize_salt)
    decoded = _decoded(todo, o.workers, pixel_spacing)  # the first films decode while the models load
    if not hasattr(measurer, "measure_images"):  # a factory: load the models now
        measurer = measurer()
    with open_csv(csv_path) as fh:

        def write(started: StartedFilms) -> None:
            try:  # the films are released once their outputs (overlays, thumbnails) have read them
                results, errors = finish_group(measurer, started, release=False)
                for d in started.group:
                    rows, failed = film_rows(d, results.get(d.path), errors.get(d.path), o.anonymize_salt,
                                             overlays=o.overlays, sr_dir=o.sr_dir, on_result=on_result)
                    write_film(fh, rows, failed, summary)
                    if on_file is not None:
                        on_file(summary)
            finally:
                release_group(started.group)

        waiting: StartedFilms | None = None
        try:
            for group in _chunks(decoded, o.chunk):
                started = start_group(measurer, group)  # its crops are made while the group before is measured
                previous, waiting = waiting, started
                if previous is not None:
                    write(previous)  # releases its own films, also when it raises
            if waiting is not None:
                done, waiting = waiting, None
                write(done)
        finally:  # an error or an interrupt: the group started but not written stops and is released
            if waiting is not None:
                abandon(waiting)
    return summary


def abandon(started: StartedFilms) -> None:
    """Stop a started group that will not be written: its crops are cancelled or waited for
    (errors ignored), then its films are released. Never raises."""
    cancel = getattr(started.started, "cancel", None)
    if cancel is not None:
        cancel()
    release_group(started.group)


@dataclass
class StartedFilms:
    """A group of decoded films handed to :func:`start_group`: ``started`` is the measurer's
    :class:`~cpak_cli.pipeline.film.StartedGroup` of the decoded ones, None when the measurer
    has no ``start`` or starting failed (then :func:`finish_group` measures them one at a time)."""

    group: Sequence[Decoded]
    started: Any | None


def start_group(measurer: Any, group: Sequence[Decoded]) -> StartedFilms:
    """Start measuring the decoded films of ``group`` (:meth:`~cpak_cli.pipeline.film.Measurer.start`:
    the detector now, the crops in the background). Never raises: a failure is handled by
    :func:`finish_group`."""
    ok = [d.image for d in group if d.image is not None]
    if not ok or not hasattr(measurer, "start"):
        return StartedFilms(group, None)
    try:
        return StartedFilms(group, measurer.start(ok))
    except Exception:  # noqa: BLE001 - finish_group measures one at a time to isolate the bad one
        return StartedFilms(group, None)


def finish_group(measurer: Any, started: StartedFilms, release: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Measure the decoded films of a started group (crops share forward passes); when that
    fails, one at a time so that only the bad film gets an error. Returns the results and the
    one-line errors, by input path (films that failed to decode are in neither). The measurer
    is called with ``release=False``; with ``release`` the group's films are released
    (:func:`release_group`) before returning, whatever happened, else the caller releases them
    (after reading their pixels)."""
    ok = [d for d in started.group if d.image is not None]
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        if not ok:
            return results, errors
        try:
            if started.started is not None:
                measured = measurer.finish(started.started, release=False)
            elif not hasattr(measurer, "start"):
                measured = measurer.measure_images([d.image for d in ok], release=False)
            else:
                raise RuntimeError("the group could not be started")
            for d, r in zip(ok, measured):
                results[d.path] = r
        except Exception:  # noqa: BLE001 - fall back to one at a time to isolate the bad one
            for d in ok:
                try:
                    results[d.path] = measurer.measure_images([d.image], release=False)[0]
                except CpakInputError as exc:  # the film's decoder failed (the decode cage's one line)
                    errors[d.path] = str(exc)
                except Exception as exc:  # noqa: BLE001
                    errors[d.path] = f"{d.path}: measurement failed ({exc.__class__.__name__}: {exc})"
        return results, errors
    finally:
        if release:
            release_group(started.group)


def release_group(group: Sequence[Decoded]) -> None:
    """Release every decoded image of ``group`` (``release()``: a held film leaves its decode
    worker, a FilmSource frees its decoders); never raises."""
    for d in group:
        if d.image is not None:
            try:
                d.image.release()
            except Exception:  # noqa: BLE001 - releasing frees memory early; it never costs a film
                pass


def measure_group(measurer: Any, group: Sequence[Decoded]) -> tuple[dict[str, Any], dict[str, str]]:
    """Measure the decoded films of ``group`` in one call (:func:`start_group` then
    :func:`finish_group`); the films are released."""
    return finish_group(measurer, start_group(measurer, group))


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
