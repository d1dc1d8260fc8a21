"""The options of the front door (:mod:`cpak_cli.api`), one small frozen dataclass per concern:
:class:`MeasureOptions` (how a film is measured), :class:`FilmOutputs` (files written per film),
:class:`BatchOptions` (how a folder is walked and written), and :class:`FilmOutcome` (one film's
result or one-line error). Import them from :mod:`cpak_cli.api`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from cpak_cli.errors import CpakError

if TYPE_CHECKING:
    from cpak_cli.pipeline.result import ScanResult


#: The placeholder of :class:`FilmOutputs` paths replaced by the input's file name without suffix.
STEM = "{stem}"


@dataclass(frozen=True)
class MeasureOptions:
    """How a film is measured.

    Attributes:
        weights_dir: folder of model weights + cards (None: ``CPAK_WEIGHTS_DIR`` or the shipped ones).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        method: landmark extraction method of the paper, 1-5 (3: threshold half way, largest
            component, probability-weighted centroid).
        pixel_spacing: ``(row_mm, col_mm)`` in the file's stored order; overrides the file's
            spacing (required for PNG/TIFF).
    """

    weights_dir: Path | None = None
    device: str = "auto"
    method: int = 3
    pixel_spacing: tuple[float, float] | None = None


@dataclass(frozen=True)
class FilmOutputs:
    """Files written for each measured film (None: not written).

    A path may contain ``{stem}`` (the input's file name without its suffix), which is required
    when several films are measured into the same option. ``overlay``: ``.png`` or ``.dcm``
    (DICOM Secondary Capture in the film's study); ``landmarks``: the landmark JSON ``cpak
    angles`` reads; ``sr``: a DICOM Structured Report (TID 1500 measurement report in the film's
    study, :mod:`cpak_cli.outputs.sr`; DICOM films only).
    """

    landmarks: Path | None = None
    overlay: Path | None = None
    sr: Path | None = None

    def paths(self) -> dict[str, Path]:
        """The outputs that are set, by name."""
        named = (("landmarks", self.landmarks), ("overlay", self.overlay), ("sr", self.sr))
        return {k: Path(v) for k, v in named if v is not None}

    def for_input(self, source: str | Path) -> FilmOutputs:
        """These outputs with ``{stem}`` replaced by ``source``'s file name without its suffix."""
        stem = Path(source).stem
        return FilmOutputs(**{k: Path(str(v).replace(STEM, stem)) for k, v in self.paths().items()})

    def check_for(self, sources: Iterable[str | Path]) -> None:
        """Raise :class:`CpakError` when several ``sources`` would write the same output path."""
        sources = list(sources)
        if len(sources) < 2:
            return
        for name, p in self.paths().items():
            targets = {str(self.for_input(s).paths()[name]) for s in sources}
            if len(targets) < len(sources):
                raise CpakError(
                    f"--{name.replace('_', '-')} {p}: several films would write the same file; "
                    f"put {STEM} in the name (e.g. out/{STEM}{p.suffix}) and give films distinct names"
                )


@dataclass(frozen=True)
class BatchOptions:
    """How a folder is measured into a CSV.

    Attributes:
        recursive: descend into sub-folders.
        resume: skip inputs already in the CSV and append the rest.
        overwrite: replace an existing CSV (otherwise an existing CSV is an error).
        workers: decoding worker processes (each film is decoded in a caged process).
        chunk: films whose crops share one forward pass.
        overlays: folder for one overlay PNG per film.
        sr_dir: folder for one DICOM SR per film (:func:`cpak_cli.pipeline.batch.sr_name`); not
            inside the input folder (the SRs would be read as inputs).
        anonymize_salt: when set, inputs and UIDs are written as salted hashes (the SRs too), and the text
            burned into each film outside the legs is blanked in its overlay
            (:mod:`cpak_cli.outputs.redact`; README "De-identification").
        report: a self-contained HTML report of the whole CSV written at the end
            (:mod:`cpak_cli.outputs.html_report`; thumbnails kept in ``CSV.thumbs/``).
        engine: ``"local"`` (decoding processes + the networks in this process) or ``"ray"``
            (Ray Data tasks on one machine or a cluster, :mod:`cpak_cli.pipeline.ray_engine`;
            ``workers`` is then not used: decoding takes every CPU Ray offers).
        ray_address: the Ray to run on with ``engine="ray"`` (None: ``RAY_ADDRESS``, a Ray
            started with ``ray start`` on this machine, or a new local one).
    """

    recursive: bool = False
    resume: bool = False
    overwrite: bool = False
    workers: int = 2
    chunk: int = 4
    overlays: Path | None = None
    sr_dir: Path | None = None
    anonymize_salt: str | None = None
    report: Path | None = None
    engine: str = "local"
    ray_address: str | None = None


#: The values of :attr:`BatchOptions.engine`.
ENGINES = ("local", "ray")


@dataclass
class FilmOutcome:
    """One film of :func:`measure_files`: its result, or the one-line error that stopped it."""

    path: str
    result: ScanResult | None = None
    error: str | None = None

    @property
    def measured(self) -> bool:
        """True when at least one leg has its angles."""
        return self.result is not None and any(leg.measured for leg in self.result.legs.values())

    def not_measured_reason(self) -> str:
        """Why no leg was measured, one line (empty when one was)."""
        if self.error is not None:
            return self.error
        if self.measured or self.result is None:
            return ""
        reasons = "; ".join(f"{s}: {leg.error}" for s, leg in self.result.legs.items()) or "no leg found on the film"
        return f"{self.path}: no leg could be measured ({reasons})"
