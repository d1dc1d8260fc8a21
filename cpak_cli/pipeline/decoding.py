"""Finding and decoding a batch's inputs: which files are candidates, and each film opened in the
decode cage (:mod:`cpak_cli.input.cage`) by worker threads, in input order, a bounded number in
flight; a file that cannot be read becomes a :class:`Decoded` with its one-line error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from cpak_cli.errors import CpakError, CpakInputError

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}


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
    crash, hang or memory bomb gives the film an error row). No film comes back as a float32 copy
    of the whole film: a JPEG 2000 film that can be decoded piecewise comes back as a
    :class:`~cpak_cli.input.film_source.FilmSource` holding its codestream and the detector's
    reduced view (its joint windows are decoded later, in the cage's workers); any other film is
    decoded in full and stays in the worker that decoded it, and comes back as a
    :class:`~cpak_cli.input.held.HeldFilm` holding the detector's input (its crops are made in
    that worker). Either fetches its whole pixels only when something reads them."""
    path, spacing = args
    from cpak_cli.input.cage import open_caged

    try:
        sha = file_sha256(path)
    except OSError as exc:
        return Decoded(path, "", None, f"{path}: cannot read file ({exc.__class__.__name__})")
    try:
        return Decoded(path, sha, open_caged(path, fallback_spacing=spacing), None)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a batch
        return Decoded(path, sha, None, error_line(path, exc))


def error_line(path: str, exc: BaseException) -> str:
    """A film's error row text: a :class:`~cpak_cli.errors.CpakError`'s own line ("PATH:
    reason"), anything else as an unexpected error of ``path``."""
    if isinstance(exc, CpakError):
        return str(exc)
    return f"{path}: unexpected error {exc.__class__.__name__}: {exc}"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the CSV's audit column)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decoded(paths: Sequence[Path], workers: int, spacing: tuple[float, float] | None) -> Iterator[Decoded]:
    """Decoded inputs in input order (:func:`decode_one`). With workers > 1 that many files are
    opened at once, each in one of the decode cage's worker processes (at most ``2 * workers``
    in flight, so memory stays bounded); a worker that dies, hangs or runs out of memory turns
    its file into an error row and is replaced."""
    from cpak_cli.input.cage import default_cage

    default_cage().ensure(max(1, workers))  # started now, before the models (torch) load: fork is cheap
    args = [(str(p), spacing) for p in paths]
    if workers <= 1 or len(args) <= 1:
        return (decode_one(a) for a in args)
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

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
