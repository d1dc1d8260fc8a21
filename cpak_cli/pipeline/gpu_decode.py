"""GPU decoding of a chunk's JPEG 2000 films before they are measured (optional: nvImageCodec,
``pip install -e ".[gpu]"``; off with ``CPAK_GPU_DECODE=0``).

:func:`gpu_decode` decodes every still-fast :class:`~cpak_cli.input.film_source.FilmSource` of a
chunk whose crop windows have not been read, in one batched GPU call, and lets each film read its
pieces from the decoded copy (:class:`~cpak_cli.input.nvimgcodec.MemoryPixels`) instead of
decoding each window with OpenJPEG in the decode cage. It is a lossless GPU decode, spot-checked
against OpenJPEG before use: a film takes the copy only when it passes the decoder's checks and
gives the raw stored values OpenJPEG gives on a grid of patches spread over the film (16 on a
single-tile 3000 x 7500 film, at least one per tile up to 64; 0.2-0.3 s of OpenJPEG per such
film, films checked in parallel threads; :meth:`FilmSource.adopt_pixels`,
:mod:`cpak_cli.input.spot_check`). Damage between the patches is not seen; where the copy is
right, the measurements are the CPU path's. Anything that goes wrong leaves the films as they
were, and the first failed GPU decode call turns GPU decoding off for the rest of the process
(:func:`cpak_cli.input.nvimgcodec.failure`, one warning).

Unlike every other decode, this one runs in the measuring process (it shares the models' CUDA
context), outside the decode cage (:mod:`cpak_cli.input.cage`): a crash of the GPU decoder is not
contained. What it is given has passed the codestream checks of
:func:`cpak_cli.input.j2k_stream.codestream_info` and, for films the cage opened, an OpenJPEG
decode of the overview. ``CPAK_GPU_DECODE=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from cpak_cli.input.film_source import FilmSource

__all__ = ["ENV", "enabled", "gpu_decode"]

log = logging.getLogger(__name__)

#: Environment variable: ``0`` turns GPU decoding off.
ENV = "CPAK_GPU_DECODE"


def enabled(device: str) -> bool:
    """Whether films measured on ``device`` are decoded on the GPU: a CUDA device, nvImageCodec
    available (:func:`cpak_cli.input.nvimgcodec.available`), no failed GPU decode call in this
    process (:func:`cpak_cli.input.nvimgcodec.failure`) and ``CPAK_GPU_DECODE`` not ``0``."""
    from cpak_cli.input import nvimgcodec

    return (str(device).startswith("cuda") and os.environ.get(ENV, "").strip() != "0"
            and nvimgcodec.failure() is None and nvimgcodec.available())


def _device_id(device: str) -> int:
    """The CUDA device index of ``"cuda"`` / ``"cuda:N"`` (``"cuda"``: torch's current one)."""
    _, _, index = str(device).partition(":")
    if index:
        return int(index)
    import torch

    return int(torch.cuda.current_device())


def gpu_decode(images: Sequence[Any], device: str) -> int:
    """Decode the JPEG 2000 films among ``images`` on the GPU (see the module docstring) and
    return how many now read their pieces from the GPU's decode; 0 when ``device`` is not CUDA,
    nvImageCodec is missing or ``CPAK_GPU_DECODE=0``. Never raises."""
    try:
        if not enabled(device):
            return 0
        from cpak_cli.input.j2k_stream import codestream_info
        from cpak_cli.input.nvimgcodec import MemoryPixels, decode_frames

        films = [im for im in images if isinstance(im, FilmSource) and im.fast and not im.windows_read
                 and not isinstance(im.piece_source, MemoryPixels)]
        pairs = [(f, info) for f in films if (info := codestream_info(f.piece_source.codestream)) is not None]
        if not pairs:
            return 0
        decoded = decode_frames([f.piece_source.codestream for f, _ in pairs], _device_id(device),
                                [info for _, info in pairs])
        jobs = [(film, MemoryPixels(film.piece_source, arr, info.precision, info.tile_size), info.tile_size)
                for (film, info), arr in zip(pairs, decoded) if arr is not None]
        if not jobs:
            return 0
        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:  # OpenJPEG frees the GIL
            swapped = sum(pool.map(lambda job: job[0].adopt_pixels(job[1], job[2]), jobs))
        log.debug("GPU decode: %d of %d films", swapped, len(films))
        return swapped
    except Exception as exc:  # noqa: BLE001 - the CPU decoder is always there
        log.debug("GPU decode skipped: %s: %s", type(exc).__name__, exc)
        return 0
