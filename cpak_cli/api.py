"""The library's front door: what every CLI command calls, usable the same way from a notebook.

One film::

    from cpak_cli import api
    film = api.measure_file("scan.dcm")                   # ScanResult: legs, landmarks, flags
    film.legs["right"].ldfa, film.legs["right"].cpak

Several films in one process (the networks are loaded once and shared)::

    for outcome in api.measure_files(paths, outputs=api.FilmOutputs(overlay="out/{stem}.png")):
        print(outcome.path, outcome.error or outcome.result.legs)

A folder into a CSV an auditor can trust::

    api.run_batch("films/", "out.csv", batch=api.BatchOptions(workers=2, resume=True))

Options are small frozen dataclasses, one per concern (:class:`MeasureOptions`: how a film is
measured; :class:`FilmOutputs`: what is written per film; :class:`BatchOptions`: how a folder is
walked and written), never one function with dozens of arguments. Angles are degrees, lengths
millimetres; landmark coordinates are pixels of the head-up image (docs/conventions.md).
Every problem with an input is raised as a one-line :class:`cpak_cli.errors.CpakInputError`
``"PATH: reason"``; nothing here prints or exits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from cpak_cli import __version__
from cpak_cli.errors import CpakError, CpakInputError
from cpak_cli.options import ENGINES, BatchOptions, FilmOutcome, FilmOutputs, MeasureOptions

if TYPE_CHECKING:  # heavy modules are imported when used, so that `cpak --help` stays fast
    from cpak_cli.core.measurement import LegMeasurement
    from cpak_cli.pipeline.batch_csv import BatchSummary
    from cpak_cli.pipeline.film import Measurer, ScanResult

__all__ = [
    "MeasureOptions",
    "FilmOutputs",
    "BatchOptions",
    "FilmOutcome",
    "AnglesResult",
    "measurer_for",
    "measure_file",
    "measure_files",
    "run_batch",
    "angles_from_file",
    "write_film_outputs",
    "evaluate_landmark_files",
    "list_models",
]



@functools.lru_cache(maxsize=4)
def _cached_measurer(weights_dir: str | None, device: str, method: int, need_detector: bool) -> Measurer:
    from cpak_cli.pipeline.film import Measurer

    return Measurer(weights_dir=weights_dir, device=device, method=method, need_detector=need_detector)


def measurer_for(options: MeasureOptions = MeasureOptions(), need_detector: bool = True) -> Measurer:
    """The :class:`cpak_cli.pipeline.film.Measurer` for ``options``, loaded once per process and
    reused (models are read, hash-checked and built on the first call only).

    Raises:
        CpakModelError: missing or inconsistent weights / model card.
    """
    wd = None if options.weights_dir is None else str(options.weights_dir)
    return _cached_measurer(wd, options.device, options.method, need_detector)


def measure_file(
    path: str | Path,
    options: MeasureOptions = MeasureOptions(),
    outputs: FilmOutputs = FilmOutputs(),
    boxes: str | Path | None = None,
) -> ScanResult:
    """Measure every leg of one film and write the requested ``outputs``.

    Args:
        path: a DICOM file (or PNG/TIFF with ``options.pixel_spacing``); never modified.
        options: how to measure (:class:`MeasureOptions`).
        outputs: files to write (atomically); ``{stem}`` is replaced by the input's name.
        boxes: a joint boxes JSON to use instead of the joint detector.

    Returns:
        The :class:`cpak_cli.pipeline.result.ScanResult`: per leg the angles (degrees), lengths
        (mm), CPAK type and flags, the landmarks in head-up image pixels, the boxes, notes.

    Raises:
        CpakInputError: the film (or the boxes file) cannot be used: one line ``"PATH: reason"``.
        CpakModelError: missing or inconsistent model weights.
    """
    from cpak_cli.input.boxes import read_boxes

    box_file = read_boxes(boxes) if boxes is not None else None  # cheap, and may fail: before the decode
    image, measurer = _open_while_loading(path, options, need_detector=box_file is None)
    try:  # released after the outputs: an overlay reads the pixels its decode worker holds
        result = measurer.measure(image, box_file, release=False)
        write_film_outputs(result, outputs.for_input(path))
    finally:
        image.release()
    return result


def _open_while_loading(path: str | Path, options: MeasureOptions, need_detector: bool) -> tuple[Any, Measurer]:
    """The film opened in the process's decode cage (:func:`cpak_cli.input.cage.open_caged`: only
    what is measured is decoded, in a worker process with a time and memory limit) and the
    :func:`measurer_for` ``options``. The worker decodes while this process imports torch and
    loads the models (the first film of a process); a film that cannot be read is raised before
    a problem with the models, as when the film is opened first.
    """
    import threading

    from cpak_cli.input.cage import default_cage

    cage = default_cage()
    cage.ensure(1)  # fork the worker now: no thread and no torch yet (cheap), see input.cage
    opened: dict[str, Any] = {}

    def open_film() -> None:
        try:
            opened["image"] = cage.open(str(path), options.pixel_spacing)
        except BaseException as exc:  # noqa: BLE001 - raised below in the caller's thread
            opened["error"] = exc

    thread = threading.Thread(target=open_film, name="cpak-open", daemon=True)
    thread.start()
    try:
        measurer = measurer_for(options, need_detector=need_detector)
    except Exception:
        thread.join()
        if "error" in opened:
            raise opened["error"] from None
        raise
    thread.join()
    if "error" in opened:
        raise opened["error"]
    return opened["image"], measurer


def write_film_outputs(result: ScanResult, outputs: FilmOutputs) -> None:
    """Write ``outputs`` (``{stem}`` already replaced) of one measured film, atomically each."""
    if outputs.landmarks is not None:
        from cpak_cli.core.landmarks import write_landmarks

        write_landmarks(outputs.landmarks, result.to_landmark_file())
    if outputs.overlay is not None:
        from cpak_cli.outputs.overlay import overlay_for_result, write_overlay

        write_overlay(outputs.overlay, overlay_for_result(result), source_path=result.path)
    if outputs.sr is not None:
        from cpak_cli.outputs.sr import write_sr

        write_sr(outputs.sr, result, result.path)


def measure_files(
    paths: Iterable[str | Path],
    options: MeasureOptions = MeasureOptions(),
    outputs: FilmOutputs = FilmOutputs(),
    boxes: str | Path | None = None,
) -> Iterator[FilmOutcome]:
    """Measure several films in one process, one :class:`FilmOutcome` per film in input order.

    The networks are loaded once. A film that cannot be read gives an outcome with its one-line
    ``error`` and the next film is measured; a problem with the models (:class:`CpakModelError`)
    or with ``outputs`` naming one file for several films is raised before anything is written.
    """
    paths = [Path(p) for p in paths]
    outputs.check_for(paths)
    from cpak_cli.errors import CpakModelError

    for p in paths:
        try:
            yield FilmOutcome(str(p), result=measure_file(p, options, outputs, boxes))
        except CpakModelError:
            raise
        except CpakError as exc:
            yield FilmOutcome(str(p), error=" ".join(str(exc).split()))


def run_batch(
    folder: str | Path,
    csv_path: str | Path,
    options: MeasureOptions = MeasureOptions(),
    batch: BatchOptions = BatchOptions(),
    on_file: Callable[[BatchSummary], None] | None = None,
) -> BatchSummary:
    """Measure every DICOM under ``folder`` into ``csv_path`` (one row per leg, an error row per
    bad file; rows flushed one film at a time; see :mod:`cpak_cli.pipeline.batch`).

    ``on_file`` is called with the running :class:`cpak_cli.pipeline.batch.BatchSummary` after
    each film (progress bars). With ``batch.report`` the HTML report of every row of the CSV
    (earlier runs included on resume) is written at the end.

    Raises:
        CpakError: no DICOM found, an existing CSV without ``resume``/``overwrite``, a resume
            with another anonymization salt, a report path that is a folder or the CSV, an unknown
            ``engine``, or ``engine="ray"`` without Ray.
        CpakModelError: missing or inconsistent model weights.
    """
    from cpak_cli.outputs import html_report
    from cpak_cli.pipeline import batch as batch_mod
    from cpak_cli.pipeline.batch_csv import check_output
    from cpak_cli.pipeline.decoding import find_inputs

    if batch.engine not in ENGINES:
        raise CpakError(f"--engine {batch.engine}: use one of {', '.join(ENGINES)}")
    folder, csv_path = Path(folder), Path(csv_path)
    check_output(csv_path, batch.resume, batch.overwrite, batch.anonymize_salt)
    if batch.sr_dir is not None:
        sr_dir, root = Path(batch.sr_dir).resolve(), folder.resolve()
        if sr_dir == root or (batch.recursive and root in sr_dir.parents):
            raise CpakInputError(batch.sr_dir, "--sr-dir must not be inside the input folder (its SRs would be read as inputs)")
    if batch.report is not None:
        html_report.check_report_path(batch.report, csv_path)
    inputs = find_inputs(folder, batch.recursive)
    if not inputs:
        raise CpakInputError(folder, "no DICOM files found" + ("" if batch.recursive else " (try --recursive)"))
    if not (batch.resume and csv_path.exists()):  # a fresh CSV: no thumbnail of an older one may show
        html_report.clear_thumbnails(csv_path)
    thumbnails = None if batch.report is None else html_report.ThumbnailWriter(csv_path, batch.anonymize_salt)
    if batch.engine == "ray":
        from cpak_cli.pipeline import ray_engine

        summary = ray_engine.run_batch(
            inputs, csv_path,
            {"weights_dir": None if options.weights_dir is None else str(options.weights_dir),
             "device": options.device, "method": options.method},
            batch, pixel_spacing=options.pixel_spacing, on_file=on_file, on_result=thumbnails,
        )
    else:  # the decode workers start (fork) before the models load (pipeline.decoding)
        summary = batch_mod.run_batch(
            inputs, csv_path, functools.partial(measurer_for, options), batch,
            pixel_spacing=options.pixel_spacing, on_file=on_file, on_result=thumbnails,
        )
    if batch.report is not None:
        html_report.write_report(csv_path, batch.report, anonymized=batch.anonymize_salt is not None)
    return summary


@dataclass
class AnglesResult:
    """Angles of every leg found in one landmark file."""

    source: str
    spacing_mm: tuple[float, float]
    legs: dict[str, LegMeasurement]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        from cpak_cli.core.measurement import leg_length_difference_mm

        return {
            "source": self.source,
            "pixel_spacing_mm": list(self.spacing_mm),
            "legs": {side: leg.to_json() for side, leg in self.legs.items()},
            "leg_length_difference_mm": leg_length_difference_mm(self.legs),
            "tool_version": __version__,
        }


def angles_from_file(path: str | Path, pixel_spacing: tuple[float, float] | None = None) -> AnglesResult:
    """Measure every leg of a landmark JSON file; ``pixel_spacing`` (row, col mm) overrides the file's.

    Raises:
        CpakInputError: unreadable file, no or invalid spacing, no legs.
    """
    from cpak_cli.core.landmarks import SIDES, read_landmarks
    from cpak_cli.core.measurement import measure_leg

    lf = read_landmarks(path)
    spacing = pixel_spacing if pixel_spacing is not None else lf.spacing_mm
    if spacing is None:
        raise CpakInputError(path, "no pixel_spacing_mm in the file; pass --pixel-spacing ROW COL")
    if not (spacing[0] > 0 and spacing[1] > 0):
        raise CpakInputError(path, f"pixel spacing must be > 0, got {spacing}")
    if not lf.legs:
        raise CpakInputError(path, "the file has no legs")
    legs = {
        side: measure_leg(side, lf.legs[side], spacing, patient_right_on_image_left=lf.patient_right_on_image_left)
        for side in SIDES
        if side in lf.legs
    }
    return AnglesResult(source=str(path), spacing_mm=(float(spacing[0]), float(spacing[1])), legs=legs)


def evaluate_landmark_files(
    pred: str | Path, truth: str | Path, json_out: str | Path | None = None, csv_out: str | Path | None = None
) -> dict[str, Any]:
    """Compare predicted landmark files with true ones (files or folders matched by case name).

    Returns the report (landmark error in mm: median, IQR, p95, SDR; angle MedAE in degrees; CPAK
    precision/recall/F1) and writes it as JSON / one CSV row per leg when asked (atomically).

    Raises:
        CpakInputError: unreadable files or no matching pairs.
    """
    from cpak_cli.evaluation.files import evaluate_pairs, pair_files, write_report

    report = evaluate_pairs(pair_files(Path(pred), Path(truth)))
    write_report(report, None if json_out is None else Path(json_out), None if csv_out is None else Path(csv_out))
    return report


def list_models(weights_dir: str | Path | None = None, check: bool = False) -> tuple[Path, list[dict[str, Any]]]:
    """The weights folder used and one entry per model in it (name, joint, encoder, size, sha256
    check against its card, recorded accuracy); ``check`` also builds each model and loads it
    strictly."""
    from cpak_cli.networks.model_cards import weights_dir as resolve_dir
    from cpak_cli.networks.model_list import list_models as _list

    folder = resolve_dir(weights_dir)
    return folder, _list(folder, check_shapes=check)
