"""Throughput of `cpak batch` on a folder: films/s end to end, where the time goes, and the rate
of the networks alone on the same films, so that end to end / networks shows what to speed up.

    python benchmarks/bench_throughput.py DIR [--device auto|cpu|cuda] [--workers 2] [--chunk 4]
        [--limit N] [--engine local|ray] [--net-batch B] [--json OUT.json]

1. End to end: ``api.run_batch`` on DIR (the first ``--limit`` films) into a scratch CSV, with the
   models already loaded and warmed on one film (model loading is reported apart). With the local
   engine the main process's time is split into stages by timers wrapped around the functions
   that do them (nothing in the package changes):

   * ``wait_for_decode``: waiting for the decoding workers (``batch._decoded``); large when
     decoding, not the networks, limits the rate;
   * ``detector``: ``Measurer.detect_boxes`` (input frames, detector network, box decoding), of
     which ``detector_network`` is the network (``networks.models.predict``);
   * ``crops``: crop resampling + normalisation (``networks.inference.make_crop``), summed over
     the crop threads: they run in the background while the networks of the group before run,
     so this overlaps the other stages;
   * ``networks``: the landmark networks (``networks.inference.predict``);
   * ``points``: probability maps -> points (``networks.inference.points_from_probs``);
   * ``measure_other``: the rest of ``start_group`` + ``finish_group`` (waiting for crops the
     background has not finished, legs, checks, recentring bookkeeping);
   * ``output``: CSV rows, overlays, writing + fsync (``batch.film_rows`` + ``batch.write_film``).

   A stage whose function no longer exists or was never called is reported as null (the code
   moved: update the patch points in :data:`STAGES`).
2. Decode: ``batch.decode_one`` in this process on the first ``--decode-films`` films (seconds
   per film for one process; the workers share that).
3. Networks only: the exact network inputs of step 1 (recorded during it, up to
   ``--capture-mb``) run again through the same ``predict`` with ``--net-batch`` crops per
   forward pass: films/s of the networks alone (detector + landmark networks).

Prints a summary and, with ``--json``, writes every figure (device, GPU name, torch/CUDA
versions) so runs can be compared. Uses the shipped models unless ``--weights-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

#: stage -> (module, attribute) of the function whose calls are timed in the main process.
STAGES: dict[str, tuple[str, str]] = {
    "wait_for_decode": ("cpak_cli.pipeline.batch", "_decoded"),
    "start_group": ("cpak_cli.pipeline.batch", "start_group"),
    "finish_group": ("cpak_cli.pipeline.batch", "finish_group"),
    "detector": ("cpak_cli.pipeline.film", "Measurer.detect_boxes"),
    "detector_network": ("cpak_cli.networks.models", "predict"),
    "crops": ("cpak_cli.networks.inference", "make_crop"),
    "networks": ("cpak_cli.networks.inference", "predict"),
    "points": ("cpak_cli.networks.inference", "points_from_probs"),
    "film_rows": ("cpak_cli.pipeline.batch", "film_rows"),
    "write_film": ("cpak_cli.pipeline.batch", "write_film"),
}
#: stages whose calls are recorded (module, inputs) for the networks-only pass
RECORDED = ("detector_network", "networks")


class StageTimers:
    """Wraps the functions of :data:`STAGES` while active: total seconds and calls per stage, and
    the network calls of :data:`RECORDED` (up to ``capture_bytes`` of inputs)."""

    def __init__(self, capture_bytes: int = 0) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self.recorded: list[tuple[str, Callable[..., Any], tuple, dict]] = []
        self.capture_left = capture_bytes
        self.not_captured = 0  # network calls over the capture budget

    def _timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0
                self.calls[stage] += 1
                if stage in RECORDED:
                    self._record(stage, fn, args, kwargs)
        return wrapper

    def _record(self, stage: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        size = sum(getattr(a, "nbytes", 0) for a in args)
        if size > self.capture_left:
            self.not_captured += 1
        else:
            self.capture_left -= size
            self.recorded.append((stage, fn, args, dict(kwargs)))

    def _timed_iter(self, stage: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = fn(*args, **kwargs)
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.seconds[stage] += time.perf_counter() - t0
                self.calls[stage] += 1
                yield item
        return wrapper

    @contextlib.contextmanager
    def active(self) -> Iterator[StageTimers]:
        undo = []
        for stage, (module_name, attr) in STAGES.items():
            owner: Any = importlib.import_module(module_name)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            fn = getattr(owner, name, None) if owner is not None else None
            if fn is None:
                self.missing.append(stage)
                continue
            wrap = self._timed_iter if stage == "wait_for_decode" else self._timed
            setattr(owner, name, wrap(stage, fn))
            undo.append((owner, name, fn))
        try:
            yield self
        finally:
            for owner, name, fn in reversed(undo):
                setattr(owner, name, fn)

    def stages(self) -> dict[str, float | None]:
        """Seconds per reported stage (None: not measured)."""
        s = {k: (self.seconds[k] if self.calls[k] else None) for k in STAGES}

        measuring = None if s["start_group"] is None and s["finish_group"] is None \
            else (s["start_group"] or 0.0) + (s["finish_group"] or 0.0)

        out = {
            "wait_for_decode": s["wait_for_decode"],
            "detector": s["detector"],
            "detector_network": s["detector_network"],
            "crops": s["crops"],
            "networks": s["networks"],
            "points": s["points"],
            "measure_other": None if measuring is None
            else max(0.0, measuring - sum(s[b] or 0.0 for b in ("detector", "networks", "points"))),
            "output": None if s["film_rows"] is None and s["write_film"] is None
            else (s["film_rows"] or 0.0) + (s["write_film"] or 0.0),
        }
        return {k: (None if v is None else round(v, 4)) for k, v in out.items()}


def networks_only(recorded: list[tuple[str, Callable[..., Any], tuple, dict]], batch: int) -> dict[str, Any]:
    """Run the recorded network calls again, inputs of one module concatenated and fed
    ``batch`` at a time (one warm-up pass first). Returns seconds and crops per module."""
    import numpy as np

    groups: dict[int, list[tuple[str, Callable[..., Any], tuple, dict]]] = defaultdict(list)
    for rec in recorded:
        groups[id(rec[2][0])].append(rec)
    seconds, crops = 0.0, 0
    per_module = []
    for recs in groups.values():
        stage, fn, args, kwargs = recs[0]
        x = np.concatenate([r[2][1] for r in recs]) if len(recs) > 1 else args[1]
        call_kwargs = {**kwargs, "batch_size": batch}
        fn(args[0], x[:batch], *args[2:], **call_kwargs)  # warm-up (kernels, autotuning)
        t0 = time.perf_counter()
        fn(args[0], x, *args[2:], **call_kwargs)
        dt = time.perf_counter() - t0
        seconds += dt
        crops += len(x)
        per_module.append({"stage": stage, "inputs": int(len(x)), "shape": list(x.shape[1:]), "s": round(dt, 4)})
    return {"s": round(seconds, 4), "inputs": crops, "batch": batch, "modules": per_module}


def environment(device: str) -> dict[str, Any]:
    """Device, GPU name, versions and CPU count, for the JSON."""
    import torch

    import cpak_cli

    env: dict[str, Any] = {
        "device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "cpak_cli": cpak_cli.__version__,
    }
    return env


def film_subset(folder: Path, limit: int | None, scratch: Path) -> tuple[Path, list[Path]]:
    """``folder`` itself, or a scratch folder of links to its first ``limit`` films."""
    from cpak_cli.pipeline.decoding import find_inputs

    films = find_inputs(folder)
    if limit is None or limit >= len(films):
        return folder, films
    sub = scratch / "films"
    sub.mkdir()
    for p in films[:limit]:
        (sub / p.name).symlink_to(p.resolve())
    return sub, find_inputs(sub)


def end_to_end(folder: Path, films: list[Path], options: Any, batch: Any, csv_path: Path,
               capture_mb: float = 0.0) -> tuple[dict[str, Any], StageTimers]:
    """Step 1: load and warm the models, then ``api.run_batch(folder, csv_path)`` timed (stages
    with the local engine). Returns the figures and the timers (with the recorded network calls)."""
    from cpak_cli import api
    from cpak_cli.pipeline.decoding import decode_one

    t0 = time.perf_counter()
    measurer = api.measurer_for(options)
    t_models = time.perf_counter() - t0
    first = decode_one((str(films[0]), options.pixel_spacing))
    if first.image is not None:
        measurer.measure_images([first.image])  # warm-up: CUDA context, kernels, allocator
    local = batch.engine == "local"
    timers = StageTimers(capture_bytes=int(capture_mb * 2**20) if local else 0)
    with timers.active() if local else contextlib.nullcontext(timers):
        t0 = time.perf_counter()
        summary = api.run_batch(folder, csv_path, options, batch)
        wall = time.perf_counter() - t0
    out = {
        "films": len(films), "workers": batch.workers, "chunk": batch.chunk, "engine": batch.engine,
        "model_load_s": round(t_models, 3), **environment(measurer.device),
        "wall_s": round(wall, 3), "films_per_s": round(len(films) / wall, 3),
        "legs": summary.legs, "error_rows": summary.failed,
        "stages_s": timers.stages() if local else None,
        "stage_calls": dict(timers.calls), "stages_not_found": timers.missing,
    }
    return out, timers


def decode_rate(films: list[Path], n: int) -> dict[str, Any]:
    """Step 2: ``decode_one`` in this process on the first ``n`` films."""
    from cpak_cli.pipeline.decoding import decode_one

    times = []
    for p in films[: max(1, n)]:
        t0 = time.perf_counter()
        decode_one((str(p), None))
        times.append(time.perf_counter() - t0)
    return {"films": len(times), "s_per_film_mean": round(statistics.fmean(times), 4),
            "s_per_film_max": round(max(times), 4), "films_per_s_one_process": round(len(times) / sum(times), 3)}


def networks_rate(timers: StageTimers, films: int, batch: int) -> dict[str, Any] | None:
    """Step 3: the recorded network inputs again, ``batch`` per forward pass; films/s."""
    if not timers.recorded:
        return None
    net = networks_only(timers.recorded, batch)
    net["films_per_s"] = round(films / net["s"], 2) if net["s"] > 0 else None
    net["calls_not_captured"] = timers.not_captured  # > 0: raise --capture-mb (the rate is then too high)
    return net


def run(args: argparse.Namespace) -> dict[str, Any]:
    from cpak_cli import api

    options = api.MeasureOptions(weights_dir=args.weights_dir, device=args.device)
    batch = api.BatchOptions(workers=args.workers, chunk=args.chunk, overwrite=True, engine=args.engine)
    with tempfile.TemporaryDirectory(prefix="cpak_bench_") as tmp:
        folder, films = film_subset(args.data, args.limit, Path(tmp))
        if not films:
            raise SystemExit(f"no DICOM films in {args.data}")
        e2e, timers = end_to_end(folder, films, options, batch, Path(tmp) / "out.csv", args.capture_mb)
    out: dict[str, Any] = {"data": str(args.data), "end_to_end": e2e, "decode": decode_rate(films, args.decode_films)}
    out["networks_only"] = net = networks_rate(timers, len(films), args.net_batch or api.measurer_for(options).batch_size)
    if net and net["films_per_s"]:
        out["end_to_end_over_networks"] = round(e2e["films_per_s"] / net["films_per_s"], 4)
    return out


def summary_text(out: dict[str, Any]) -> str:
    """A few readable lines of the figures of :func:`run`."""
    e2e = out["end_to_end"]
    gpu = f" ({e2e['gpu']})" if e2e["gpu"] else ""
    lines = [f"{e2e['films']} films on {e2e['device']}{gpu}, engine {e2e['engine']}, workers {e2e['workers']}, "
             f"chunk {e2e['chunk']}",
             f"end to end: {e2e['films_per_s']:.2f} films/s ({e2e['wall_s']:.1f} s; models loaded before: "
             f"{e2e['model_load_s']:.1f} s)"]
    if e2e["stages_s"]:
        n = e2e["films"]
        lines.append("main process, s per film: " + ", ".join(
            f"{k} " + ("-" if v is None else f"{v / n:.4f}") for k, v in e2e["stages_s"].items()))
    d = out["decode"]
    lines.append(f"decode in one process: {d['s_per_film_mean']:.3f} s per film (max {d['s_per_film_max']:.3f})")
    net = out["networks_only"]
    if net:
        lines.append(f"networks only (batch {net['batch']}): {net['films_per_s']} films/s; "
                     f"end to end / networks = {out.get('end_to_end_over_networks')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of DICOM films")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2, help="decoding worker processes (local engine)")
    ap.add_argument("--chunk", type=int, default=4, help="films per forward pass")
    ap.add_argument("--limit", type=int, default=None, help="only the first N films")
    ap.add_argument("--engine", default="local", choices=("local", "ray"))
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--net-batch", type=int, default=None, help="crops per forward pass, networks only "
                    "(default: the Measurer's)")
    ap.add_argument("--decode-films", type=int, default=8, help="films decoded in this process for step 2")
    ap.add_argument("--capture-mb", type=float, default=4096, help="network inputs kept for step 3")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    out = run(args)
    print(summary_text(out))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
