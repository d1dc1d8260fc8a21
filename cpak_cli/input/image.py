"""The loaded radiograph: pixels in a documented frame plus what the file said about them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One radiograph, normalised for the pipeline.

    Attributes:
        pixels: float32 ``(rows, cols)`` in ``[0, 1]``, bone bright (MONOCHROME2 sense), head up
            (row 0 = top of the film, towards the head; turned per ``orientation_applied``).
        spacing_mm: ``(row_mm, col_mm)`` in millimetres per pixel of ``pixels`` (swapped from the
            file's order when the turn transposed the image).
        spacing_source: which rule gave ``spacing_mm``, one of :data:`SPACING_SOURCES` (see the
            module docstring); those in :data:`UNCORRECTED_SPACING_SOURCES` are at the detector,
            *not* corrected for magnification (lengths overestimated, typically 5-15 %);
            ``"user"``: ``--pixel-spacing`` / ``fallback_spacing``.
        patient_right_on_image_left: True if the patient's right is on the image's left (small
            x) of ``pixels``, the standard AP display.
        assumed_orientation: True when PatientOrientation (0020,0020) did not decide the side
            (absent/empty, or its across value is A/P) and the standard AP display was assumed;
            always True for PNG/TIFF.
        laterality: ImageLaterality (0020,0062), else Laterality (0020,0060): ``"R"``,
            ``"L"``, ``"B"`` (both) or None (absent/other values such as "U").
        path: the input path as given (str).
        sop_instance_uid, study_date, modality, transfer_syntax (UID string), photometric
            (PhotometricInterpretation as stored, before inversion): None when absent (always
            None for PNG/TIFF).
        rows, cols: ``pixels.shape``.
        file_format: ``"dicom"``, ``"png"`` or ``"tiff"``.
        voi_source: how values were mapped to ``[0, 1]``: ``"voi_lut"``, ``"window"`` or
            ``"minmax"``.
        patient_orientation: the raw PatientOrientation value as stored (e.g. ``"F\\R"``) or
            None.
        orientation_applied: the turn made to bring the head up, one of
            :data:`ORIENTATION_TURNS`: ``"none"``, ``"flip_vertical"``, ``"transpose"`` or
            ``"transpose+flip_vertical"`` (always ``"none"`` for PNG/TIFF).
        inversion: why the values were inverted (``1 - v``), one of :data:`INVERSIONS`:
            ``"none"``, ``"MONOCHROME1"``, ``"PresentationLUTShape INVERSE"`` (on MONOCHROME2)
            or ``"MONOCHROME1+INVERSE"`` (one inversion).
        metadata: a few informative tags as strings (Manufacturer, StudyInstanceUID,
            SeriesInstanceUID, ViewPosition, ... and ``TransferSyntaxName``); only tags present
            in the file. No patient identifiers.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float]
    spacing_source: str
    patient_right_on_image_left: bool
    assumed_orientation: bool
    laterality: str | None
    path: str
    sop_instance_uid: str | None = None
    study_date: str | None = None
    modality: str | None = None
    transfer_syntax: str | None = None
    photometric: str | None = None
    rows: int = 0
    cols: int = 0
    file_format: str = "dicom"
    voi_source: str = "minmax"
    patient_orientation: str | None = None
    orientation_applied: str = "none"
    inversion: str = "none"
    metadata: dict[str, str] = field(default_factory=dict)

    #: True for images whose ``pixels`` are only decoded (or fetched) when read, which the
    #: pipeline reads through crops instead (:class:`~cpak_cli.input.film_source.FilmSource`,
    #: :class:`~cpak_cli.input.held.HeldFilm`; they have ``release()``); not a field.
    decodes_on_demand: ClassVar[bool] = False

    def release(self) -> None:
        """Free what an image that decodes on demand keeps for later reads (nothing here)."""

    def meta(self) -> dict[str, Any]:
        """Every field but ``pixels`` (the :class:`LoadedImage` keywords), without reading the
        pixels."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(LoadedImage) if f.name != "pixels"}

    def with_pixels(self, pixels: np.ndarray) -> LoadedImage:
        """A plain :class:`LoadedImage` with this image's metadata and ``pixels`` instead of its
        own (same frame: head up, ``(rows, cols)`` unchanged), e.g. a redacted copy. Works for
        lazily decoded films too (their own pixels are not decoded)."""
        return LoadedImage(pixels=pixels, **self.meta())
