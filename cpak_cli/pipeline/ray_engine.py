"""`cpak batch --engine ray`: the batch pipeline as Ray Data tasks, on one machine or a cluster.

The same steps as :func:`cpak_cli.pipeline.batch.run_batch`, spread out by Ray:

* decode: one Ray task per film (:func:`cpak_cli.pipeline.decoding.decode_one`, one CPU each) on
  any node; a bad file becomes its error row as in the default engine;
* measure: a pool of actors that load the models once and measure ``chunk`` films per call
  (:func:`~cpak_cli.pipeline.batch.measure_group` + :func:`~cpak_cli.pipeline.batch.film_rows`):
  one actor per GPU of the cluster, or one per node with half its CPUs when there is no GPU (or
  with ``--device cpu``); overlays are written by the actors, so ``--overlays`` must be a folder
  every node can write (a shared file system) on a cluster;
* write: the driver (the process that runs ``cpak batch``) receives the rows, puts them back in
  input order and appends them to the CSV one film at a time, flushed and fsynced
  (:func:`~cpak_cli.pipeline.batch_csv.write_film`), so ``--resume`` works exactly as with the
  default engine. The CSV is always written on the driver's machine.

Ray is imported only here (``pip install 'cpak-cli[ray]'``). Without ``ray_address`` Ray's own
rule applies: ``RAY_ADDRESS`` if set, else a Ray started with ``ray start`` on this machine, else a
new local Ray that stops when the batch ends.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TextIO

import numpy as np

from cpak_cli import errors
from cpak_cli.errors import CpakError
from cpak_cli.options import BatchOptions
from cpak_cli.pipeline.batch import film_rows, measure_group
from cpak_cli.pipeline.batch_csv import BatchSummary, open_csv, pending_inputs, write_film
from cpak_cli.pipeline.decoding import Decoded, decode_one, error_line

RAY_MISSING = "--engine ray needs Ray: pip install 'cpak-cli[ray]' (or 'ray[data]')"


def _decode_row(row: dict[str, Any], spacing: tuple[float, float] | None, cwd: str) -> dict[str, Any]:
    """Ray task: decode one film; the :class:`~cpak_cli.pipeline.batch.Decoded` travels pickled
    (a :class:`~cpak_cli.input.held.HeldFilm` as a plain LoadedImage with its pixels, fetched
    from the decode worker here, which then drops it, whatever happened; a failed fetch, of any
    kind, is the film's one-line error row). A relative input path is read from the driver's
    working folder ``cwd`` when this node has it (the path stays as given: it is the CSV's
    ``input``)."""
    path = str(row["path"])
    if not os.path.isabs(path) and os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    dec = decode_one((path, spacing))
    try:
        data = pickle.dumps(dec, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the cage raises what the worker raised: one film's error row
        reason = error_line(path, exc)
        data = pickle.dumps(Decoded(path, dec.sha256, None, " ".join(reason.split())), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        if dec.image is not None:
            dec.image.release()
    return {"index": row["index"], "decoded": data}


class MeasureActor:
    """Ray actor: holds one :class:`~cpak_cli.pipeline.film.Measurer` (models loaded once) and
    turns a batch of decoded films into their CSV rows (JSON text per film) and error flags."""

    def __init__(self, measurer_args: Mapping[str, Any], anonymize_salt: str | None, overlays: str | None,
                 sr_dir: str | None = None, on_result: Callable[[Decoded, Any | None], None] | None = None,
                 cwd: str | None = None) -> None:
        from cpak_cli.pipeline.film import Measurer

        if cwd is not None and os.getcwd() != cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative inputs: the SR re-reads the source's header from the driver's folder
        self.measurer = Measurer(**measurer_args)
        self.anonymize_salt = anonymize_salt
        self.overlays = None if overlays is None else Path(overlays)
        self.sr_dir = None if sr_dir is None else Path(sr_dir)
        self.on_result = on_result

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decs = [pickle.loads(b) for b in batch["decoded"]]
        results, problems = measure_group(self.measurer, decs)
        texts, failed = [], []
        for d in decs:
            rows, bad = film_rows(d, results.get(d.path), problems.get(d.path), self.anonymize_salt,
                                  overlays=self.overlays, sr_dir=self.sr_dir, on_result=self.on_result)
            texts.append(json.dumps(rows))
            failed.append(bad)
        return {"index": np.asarray(batch["index"]), "rows": np.asarray(texts, dtype=object),
                "failed": np.asarray(failed, dtype=bool)}


def run_batch(
    inputs: Sequence[Path],
    csv_path: Path,
    measurer_args: Mapping[str, Any],
    options: BatchOptions = BatchOptions(engine="ray"),
    *,
    pixel_spacing: tuple[float, float] | None = None,
    on_file: Callable[[BatchSummary], None] | None = None,
    on_result: Callable[[Decoded, Any | None], None] | None = None,
) -> BatchSummary:
    """Measure ``inputs`` into ``csv_path`` with Ray; the same CSV (columns, rows, row order, error
    rows, resume) as :func:`cpak_cli.pipeline.batch.run_batch`.

    ``measurer_args`` are the :class:`~cpak_cli.pipeline.film.Measurer` arguments each actor
    builds its measurer with (``weights_dir``, ``device``, ``method``); ``device`` ``"auto"``
    uses the GPUs when the cluster has any. ``options`` gives ``resume``, ``overwrite``, ``chunk``,
    ``anonymize_salt``, ``overlays``, ``sr_dir`` and ``ray_address`` (``workers`` is not used).
    ``overlays``, ``sr_dir`` and ``on_result`` (e.g. the
    report's thumbnails) run in the actors, so their folders must be on a file system every node
    shares, and ``on_result`` must pickle. ``ray_address``: a running Ray (``HOST:6379``,
    ``ray://HOST:10001`` or ``auto``); None: see the module docstring.

    Raises:
        CpakError: Ray is not installed, ``device="cuda"`` on a cluster without GPU, or the
            output problems :func:`~cpak_cli.pipeline.batch.run_batch` raises.
        CpakModelError: the actors cannot load the models (raised on the driver).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise CpakError(RAY_MISSING) from None
    overlays, sr_dir, anonymize_salt = options.overlays, options.sr_dir, options.anonymize_salt
    todo, summary = pending_inputs(inputs, csv_path, options.resume, options.overwrite, anonymize_salt)
    with open_csv(csv_path) as fh:
        if not todo:
            return summary
        started = _start_ray(ray, options.ray_address)
        quiet = _quiet(ray)
        try:
            next(quiet)
            args = dict(measurer_args)
            if args.get("weights_dir") is None and os.environ.get("CPAK_WEIGHTS_DIR"):
                args["weights_dir"] = os.environ["CPAK_WEIGHTS_DIR"]  # the driver's choice, on every node
            use_gpu, actors, actor_cpus = _plan(ray, str(args.get("device", "auto")))
            args["device"] = "cuda" if use_gpu else "cpu"
            items = [{"index": i, "path": str(p)} for i, p in enumerate(todo)]
            ds: Any = ray.data.from_items(items, override_num_blocks=len(todo))
            # a process that dies on a film (a decoder or the networks crashing) is retried once, not
            # forever (Ray Data's default for actors), then the film gets an error row; these remote
            # arguments (Ray < 2.64) differ between the two steps, which also keeps Ray from fusing
            # the decoding into the measuring actors
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                ds = ds.map(_decode_row, fn_kwargs={"spacing": pixel_spacing, "cwd": os.getcwd()}, num_cpus=1,
                            max_retries=1)
                ds = ds.map_batches(
                    MeasureActor, batch_size=options.chunk, batch_format="numpy",
                    fn_constructor_kwargs={"measurer_args": args, "anonymize_salt": anonymize_salt,
                                           "overlays": None if overlays is None else str(Path(overlays).resolve()),
                                           "sr_dir": None if sr_dir is None else str(Path(sr_dir).resolve()),
                                           "on_result": on_result, "cwd": os.getcwd()},
                    compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=1 if use_gpu else 0,
                    num_cpus=actor_cpus, max_task_retries=1,
                )
            _write_in_order(ds, todo, fh, summary, anonymize_salt, on_file)
        finally:
            next(quiet, None)  # restores the settings
            if started:
                ray.shutdown()
    return summary


#: Ray Data settings for a batch: no progress bars or stats on the terminal, and a film whose
#: worker process died is skipped (it gets an error row) instead of stopping the batch.
_CONTEXT = {"enable_progress_bars": False, "enable_auto_log_stats": False, "max_errored_blocks": -1}


def _quiet(ray: Any) -> Iterator[None]:
    """Generator: on the first ``next`` set :data:`_CONTEXT` and keep Ray Data's log lines off
    the terminal (they stay in Ray's log files); on the second restore both."""
    import logging

    ctx = ray.data.DataContext.get_current()
    saved = {k: getattr(ctx, k) for k in _CONTEXT}
    consoles = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in consoles]
    for k, v in _CONTEXT.items():
        setattr(ctx, k, v)
    for h in consoles:
        h.setLevel(max(h.level, logging.ERROR))
    yield
    for k, v in saved.items():
        setattr(ctx, k, v)
    for h, level in zip(consoles, levels):
        h.setLevel(level)


def _write_in_order(ds: Any, todo: Sequence[Path], fh: TextIO, summary: BatchSummary, anonymize_salt: str | None,
                    on_file: Callable[[BatchSummary], None] | None) -> None:
    """Append the rows of ``ds`` to ``fh`` in input order, one film at a time. A film Ray dropped
    (its decode task or actor process died twice) gets an error row once every other is in."""
    done: dict[int, tuple[list[dict[str, str]], bool]] = {}
    nxt = 0

    def flush(final: bool) -> None:
        nonlocal nxt
        while nxt < len(todo) and (nxt in done or final):
            if nxt in done:
                rows, failed = done.pop(nxt)
            else:
                path = str(todo[nxt])
                dead = Decoded(path, "", None, f"{path}: the Ray worker decoding or measuring this file died")
                rows, failed = film_rows(dead, None, None, anonymize_salt)
            write_film(fh, rows, failed, summary)
            nxt += 1
            if on_file is not None:
                on_file(summary)

    try:
        for row in ds.iter_rows():
            done[int(row["index"])] = (json.loads(row["rows"]), bool(row["failed"]))
            flush(final=False)
    except Exception as exc:
        cause = _cpak_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    flush(final=True)


def _start_ray(ray: Any, address: str | None) -> bool:
    """Connect to (or start) Ray unless this process already did; True when it was started here.
    A Ray started here runs this checkout's ``cpak_cli`` in its workers (``PYTHONPATH``)."""
    if ray.is_initialized():
        return False
    import logging

    import cpak_cli

    runtime_env: dict[str, Any] = {}
    if address is None:
        root = str(Path(cpak_cli.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
    ray.init(address=address, runtime_env=runtime_env or None, include_dashboard=False,
             logging_level=logging.WARNING, log_to_driver=True)
    return True


def _plan(ray: Any, device: str) -> tuple[bool, int, int]:
    """(use the GPUs, number of measuring actors, CPUs each) for ``device`` on the connected
    cluster: one actor per GPU (1 CPU each), or with no GPU one actor per node that takes half
    the CPUs of the smallest node for the networks' threads (Ray sets ``OMP_NUM_THREADS`` to it;
    the other half decodes). CPU results can differ from the default engine's in the last
    decimals when the thread count differs (float sums in another order)."""
    if device not in ("auto", "cpu", "cuda"):
        raise CpakError(f"--device {device}: use auto, cpu or cuda with --engine ray")
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise CpakError("--device cuda: the Ray cluster has no GPU (use --device cpu or auto)")
    if device != "cpu" and gpus > 0:
        return True, gpus, 1
    cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return False, max(1, len(cpus)), max(1, int(min(cpus, default=2) // 2))


def _cpak_cause(exc: BaseException) -> CpakError | None:
    """The :class:`CpakError` behind a Ray error, if any, as a plain cpak exception: e.g. the
    :class:`CpakModelError` of an actor that could not load the models (Ray passes that one on
    only as the text of its traceback, whose last line is ``cpak_cli.errors.NAME: message``)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CpakError) and type(e).__module__ == errors.__name__:
            return e
        text = getattr(e, "error_msg", None) if not isinstance(e, CpakError) else str(e)
        found = _TRACEBACK_LAST.findall(text) if isinstance(text, str) else []
        if found:
            name, message = found[-1]
            cls = getattr(errors, name, None)
            if cls is errors.CpakInputError:
                return errors.CpakInputError(None, message)
            return cls(message) if isinstance(cls, type) and issubclass(cls, CpakError) else CpakError(message)
        stack += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None


_TRACEBACK_LAST = re.compile(r"^cpak_cli\.errors\.(\w+): (.+)$", flags=re.M)
