"""PNG / TIFF radiographs (8/16-bit greyscale); their spacing comes from the user."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpak_cli.errors import CpakInputError
from cpak_cli.input.image import LoadedImage
from cpak_cli.input.spacing import NO_SPACING_HINT, check_user_spacing
from cpak_cli.input.tags import short
from cpak_cli.input.values import minmax


def load_raster(
    path: Path, spath: str, fmt: str, pixel_spacing: tuple[float, float] | None
) -> LoadedImage:
    if pixel_spacing is None:
        raise CpakInputError(spath, f"PNG/TIFF has no pixel spacing; {NO_SPACING_HINT}")
    spacing = check_user_spacing(spath, pixel_spacing)
    import cv2

    arr: np.ndarray | None
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old_level = None
    try:
        if log is not None:  # keep OpenCV's decoder complaints off the terminal
            old_level = log.getLogLevel()
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        # np.fromfile + imdecode: works with any path encoding, file opened read-only
        buf = np.fromfile(str(path), dtype=np.uint8)
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except Exception:  # noqa: BLE001
        arr = None
    finally:
        if log is not None and old_level is not None:
            log.setLogLevel(old_level)
    if arr is None:
        try:
            from PIL import Image  # optional fallback (e.g. unusual TIFF compressions)
        except ImportError:
            raise CpakInputError(spath, f"unreadable {fmt.upper()} image") from None
        try:
            with Image.open(path) as im:
                arr = np.asarray(im)
        except Exception as exc:  # noqa: BLE001
            raise CpakInputError(
                spath, f"unreadable {fmt.upper()} image ({short(exc)})"
            ) from None
    arr = np.asarray(arr)
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] in (2, 3, 4):
            colour = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
            if colour.shape[2] == 3 and not (
                np.array_equal(colour[:, :, 0], colour[:, :, 1])
                and np.array_equal(colour[:, :, 0], colour[:, :, 2])
            ):
                raise CpakInputError(
                    spath, "colour image is not supported; a greyscale radiograph is needed"
                )
            arr = colour[:, :, 0]  # grey stored as RGB(A) / grey+alpha: drop alpha
        else:
            raise CpakInputError(spath, f"unexpected image shape {tuple(arr.shape)}")
    if arr.ndim != 2:
        raise CpakInputError(spath, f"unexpected image shape {tuple(arr.shape)}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise CpakInputError(spath, f"image too small ({arr.shape[0]}x{arr.shape[1]} pixels)")
    pixels = np.ascontiguousarray(minmax(spath, arr), dtype=np.float32)
    return LoadedImage(
        pixels=pixels,
        spacing_mm=spacing,
        spacing_source="user",
        patient_right_on_image_left=True,
        assumed_orientation=True,
        laterality=None,
        path=spath,
        rows=int(pixels.shape[0]),
        cols=int(pixels.shape[1]),
        file_format=fmt,
        voi_source="minmax",
        metadata={"dtype": str(arr.dtype)},
    )
