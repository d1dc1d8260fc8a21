"""GPU check of `cpak batch`, in under 10 minutes on one CUDA machine: throughput on realistic
films and GPU-vs-CPU agreement of the landmarks. Prints one JSON object (and writes it with
``--json``).

    python benchmarks/gpu_check.py [--out /tmp/cpak_gpu_check] [--data DIR] [--count 256]
        [--device cuda] [--workers N] [--chunk 8] [--cpu-films 16] [--json OUT.json]

(a) films: ``--data DIR``, or ``--count`` realistic phantom films (full size, about 2900 x 7300
    pixels at 0.14 mm, JPEG 2000 lossless, the ``variety`` look of real films) generated in
    parallel processes into ``OUT/films`` (films already there are kept, so a rerun starts at
    once). Generation stops early at ``--gen-limit-s`` (the JSON says how many were made). On
    this project's 2-core dev machine one film takes 5-7 s of one core, so 256 films take about
    2 minutes on 16 cores.
(b) GPU: ``api.run_batch`` on all films with ``--device`` (models loaded and warmed first;
    ``--workers`` decoding processes, ``--chunk`` films per forward pass): films/s end to end,
    the main process's time per stage, decoding time per film, and the networks-only rate on the
    same network inputs (``--net-batch`` per pass), as ``benchmarks/bench_throughput.py``.
(c) CPU: the first ``--cpu-films`` films again with ``--device cpu``; per landmark the max and
    median distance (mm) between the GPU and CPU positions (target: within 0.05 mm), angle
    differences (degrees), CPAK agreement, and legs / landmarks found by one only.
(d) one JSON: all figures, the GPU name, torch / CUDA / cuDNN versions, CPU count.
(e) GPU decoding (``pip install -e ".[gpu]"``: nvImageCodec; (b) uses it too unless
    ``CPAK_GPU_DECODE=0``, in GPU batches of ``min(--chunk, nvimgcodec.BATCH)`` films: each
    measured chunk is one batch, so ``cpak batch``'s default ``--chunk 4`` caps them at 4; the
    JSON reports both): the batched GPU decode of the first ``--gpu-decode-films`` films'
    JPEG 2000 codestreams (ms per film, alone and in batches), bit-exactness against OpenJPEG,
    the spot check before a film takes the GPU's copy (ms per film, one thread) and the detector's
    overview computed from that copy for a film without a cached overview (the 5/3 LL band,
    ``ll_band``: ms and level), and the landmarks of the first ``--gpu-landmark-films`` films
    measured with the GPU decode against the CPU decode (same device, same models: max
    difference in mm, target 0). Without nvImageCodec (or on the CPU) the JSON says that it was
    skipped.

It runs on the CPU too (``--device cpu --count 4``: a check of the script itself).

Needs: torch, torchvision, timm, opencv-python(-headless), scipy, safetensors, typer, rich,
numpy, and the wheels a bare GPU machine may lack: pydicom, pylibjpeg, pylibjpeg-openjpeg,
pylibjpeg-libjpeg and segmentation-models-pytorch (pure Python; its huggingface-hub, tqdm and
pillow come with timm). Not Ray. Carry them as wheels and install without the network, from the
repository root::

    pip download -d wheels pydicom pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg \\
        segmentation-models-pytorch --no-deps --python-version 3.11 --only-binary=:all:
    pip install --no-index --no-deps wheels/*.whl && python benchmarks/gpu_check.py --json gpu.json

(``cpak_cli`` itself is imported from the checkout; no install needed.) For (e) add the wheels
``nvidia-nvimgcodec-cu13`` and ``nvidia-nvjpeg2k-cu13`` (the ``[gpu]`` extra) the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # cpak_cli from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_throughput beside this file

from bench_throughput import decode_rate, end_to_end, networks_rate  # noqa: E402

TARGET_MM = 0.05


def _make_film(job: tuple[Path, int, int]) -> str:
    """Pool task: render and write phantom film ``index`` of set ``seed`` (JPEG 2000, full size)."""
    from cpak_cli.phantom import make_case, write_case

    out, seed, index = job
    case = make_case(seed, index, compression="jpeg2000", variety=True)
    return str(write_case(case, out)["dicom"])


def generate_films(out: Path, count: int, seed: int, procs: int, limit_s: float) -> dict[str, Any]:
    """(a): ``count`` films in ``out`` (existing ones kept), ``procs`` processes, at most
    ``limit_s`` seconds. Returns what was made and how fast."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [(out, seed, i) for i in range(count) if not (out / f"case{i:04d}.dcm").exists()]
    t0 = time.perf_counter()
    made = 0
    stopped = False
    if todo:
        ctx = mp.get_context("spawn")  # no fork of a process that may hold CUDA
        with ctx.Pool(max(1, min(procs, len(todo)))) as pool:
            for _ in pool.imap_unordered(_make_film, todo):
                made += 1
                if time.perf_counter() - t0 > limit_s and made < len(todo):
                    stopped = True
                    pool.terminate()
                    break
    dt = time.perf_counter() - t0
    for tmp in out.glob(".*.tmp"):  # a film cut off by terminate() leaves only an atomic-write temp
        tmp.unlink()
    return {"folder": str(out), "requested": count, "generated_now": made, "reused": count - len(todo),
            "processes": procs, "s": round(dt, 2), "films_per_s": round(made / dt, 3) if made else None,
            "stopped_at_time_limit": stopped}


def _commit() -> str | None:
    """The checkout's git commit, when git and the .git folder are there."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _rows(csv_path: Path) -> tuple[dict[tuple[str, str], dict[str, str]], set[str]]:
    """Leg rows by (file sha256, side), and the sha256 of every film in the CSV."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {(r["sha256"], r["side"]): r for r in rows if r["side"]}, {r["sha256"] for r in rows}


def compare(gpu_csv: Path, cpu_csv: Path) -> dict[str, Any]:
    """(c): landmark distances (mm) and angle differences (degrees) between the CPU rows and the
    GPU rows of the same films and legs."""
    from cpak_cli.core.landmarks import LANDMARKS

    (gpu, _), (cpu, cpu_films) = _rows(gpu_csv), _rows(cpu_csv)
    common = sorted(set(gpu) & set(cpu))
    dist: dict[str, list[float]] = {n: [] for n in LANDMARKS}
    found_by_one: dict[str, int] = {n: 0 for n in LANDMARKS}
    angles: dict[str, list[float]] = {k: [] for k in ("ldfa", "mpta", "ahka", "jlo", "mhka")}
    cpak_same = cpak_legs = 0
    for key in common:
        g, c = gpu[key], cpu[key]
        for n in LANDMARKS:
            gx, gy, cx, cy = (g[f"{n}_x_mm"], g[f"{n}_y_mm"], c[f"{n}_x_mm"], c[f"{n}_y_mm"])
            if gx and cx:
                dist[n].append(((float(gx) - float(cx)) ** 2 + (float(gy) - float(cy)) ** 2) ** 0.5)
            elif bool(gx) != bool(cx):
                found_by_one[n] += 1
        for k, v in angles.items():
            if g[k] and c[k]:
                v.append(abs(float(g[k]) - float(c[k])))
        if g["cpak"] or c["cpak"]:
            cpak_legs += 1
            cpak_same += g["cpak"] == c["cpak"]
    per = {n: {"n": len(d), "max_mm": round(max(d), 4) if d else None,
               "median_mm": round(statistics.median(d), 4) if d else None, "found_by_one_only": found_by_one[n]}
           for n, d in dist.items()}
    all_d = [x for d in dist.values() for x in d]
    worst = max(all_d) if all_d else None
    return {
        "legs_compared": len(common),
        "legs_gpu_only": sum(1 for k in gpu if k[0] in cpu_films and k not in cpu),
        "legs_cpu_only": sum(1 for k in cpu if k not in gpu),
        "landmarks": per, "max_mm": None if worst is None else round(worst, 4),
        "median_mm": round(statistics.median(all_d), 4) if all_d else None,
        "angles_max_abs_deg": {k: (round(max(v), 4) if v else None) for k, v in angles.items()},
        "cpak_agreement": f"{cpak_same}/{cpak_legs}",
        "target_mm": TARGET_MM,
        "within_target": worst is not None and worst <= TARGET_MM and not any(found_by_one.values()),
    }


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def landmark_differences(a: list[Any], b: list[Any]) -> dict[str, Any]:
    """Max distance (mm) between the landmarks of two measurements of the same films, and how
    many landmarks only one of them found."""
    dist, one_only = [], 0
    for ra, rb in zip(a, b):
        row_mm, col_mm = ra.image.spacing_mm
        for side in set(ra.landmarks) | set(rb.landmarks):
            pa, pb = ra.landmarks.get(side, {}), rb.landmarks.get(side, {})
            for name in set(pa) | set(pb):
                fa = name in pa and pa[name].found
                fb = name in pb and pb[name].found
                if fa and fb:
                    (xa, ya), (xb, yb) = pa[name].xy, pb[name].xy
                    dist.append(((xa - xb) * col_mm) ** 2 + ((ya - yb) * row_mm) ** 2)
                one_only += fa != fb
    return {"landmarks_compared": len(dist), "max_mm": round(max(dist) ** 0.5, 6) if dist else None,
            "found_by_one_only": one_only}


def overview_from_gpu_copy(path: Path, device: str) -> dict[str, Any]:
    """(e): one film opened without the cage (so no cached overview), given the GPU's copy
    (spot check timed), then the detector's overview computed from it (``ll_band`` timed)."""
    from cpak_cli.input.film_source import FilmSource
    from cpak_cli.input.loader import open_film
    from cpak_cli.input.nvimgcodec import MemoryPixels
    from cpak_cli.networks.detector import prefetch_overview
    from cpak_cli.pipeline import gpu_decode as gd

    im = open_film(path)
    if not isinstance(im, FilmSource) or im._overviews:
        return {"skipped": "not a piecewise JPEG 2000 film"}
    t0 = time.perf_counter()
    swapped = gd.gpu_decode([im], device)  # one GPU decode plus the spot check
    out: dict[str, Any] = {"film": path.name, "shape": [im.rows, im.cols], "ms_gpu_decode_and_spot_check": round(
        (time.perf_counter() - t0) * 1000, 1)}
    if not swapped or not isinstance(im.piece_source, MemoryPixels):
        return out | {"skipped": "the film did not take the GPU's copy"}
    t0 = time.perf_counter()
    prefetch_overview(im)
    out["ms_ll_band_overview"] = round((time.perf_counter() - t0) * 1000, 1)
    out["overview_level"] = max(im._overviews) if im._overviews else 0
    if not im._overviews:
        out["note"] = "no reduced overview for a film this coarse: the time is its full decode"
    return out


def spot_check_ms(path: Path, stored: np.ndarray) -> dict[str, Any]:
    """(e): the spot check alone (OpenJPEG patches against the GPU's copy) on one film, one thread."""
    from cpak_cli.input.film_source import FilmSource
    from cpak_cli.input.j2k_stream import codestream_info
    from cpak_cli.input.loader import open_film
    from cpak_cli.input.nvimgcodec import MemoryPixels
    from cpak_cli.input.spot_check import patch_grid

    im = open_film(path)
    if not isinstance(im, FilmSource) or (info := codestream_info(im.piece_source.codestream)) is None:
        return {"skipped": "not a piecewise JPEG 2000 film"}
    src = im.piece_source
    src.stored(0, (0, 0, 8, 8), check_constant=False)  # the decoder parsed, as after the overview
    t0 = time.perf_counter()
    adopted = im.adopt_pixels(MemoryPixels(src, stored, info.precision, info.tile_size), info.tile_size)
    return {"patches": len(patch_grid(src.shape, info.tile_size)), "adopted": adopted,
            "ms": round((time.perf_counter() - t0) * 1000, 1)}


def gpu_decode_check(films: list[Path], measurer: Any, device: str, decode_films: int, landmark_films: int,
                     chunk: int) -> dict[str, Any]:
    """(e): GPU decode time and exactness, the spot check, the LL band overview, landmarks with
    the GPU decode against the CPU decode (``measurer`` measures both; the GPU decode is done on
    ``device``); ``chunk``: (b)'s films per chunk (its GPU batches)."""
    import pydicom

    from cpak_cli.input import openjp2
    from cpak_cli.input.cage import open_caged
    from cpak_cli.input.j2k_stream import frame_codestream
    from cpak_cli.input.nvimgcodec import BATCH, decode_frames
    from cpak_cli.pipeline import gpu_decode as gd

    if not gd.enabled(device):
        return {"skipped": f"no GPU decode on {device!r} (nvImageCodec not installed: pip install -e '.[gpu]', "
                           "no CUDA device, or CPAK_GPU_DECODE=0)"}
    dev = gd._device_id(device)
    streams, paths = [], []
    for p in films[:decode_films]:
        ds = pydicom.dcmread(p)
        if "JPEG 2000" in ds.file_meta.TransferSyntaxUID.name and (cs := frame_codestream(ds.PixelData)):
            streams.append(cs)
            paths.append(p)
    if not streams:
        return {"skipped": "no JPEG 2000 films"}
    decode_frames(streams[:2], dev)  # warm-up: the decoder and its GPU buffers
    t0 = time.perf_counter()
    decode_frames(streams[:1], dev)
    alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = decode_frames(streams, dev)
    batched = time.perf_counter() - t0
    exact = sum(1 for cs, arr in zip(streams[:8], decoded) if arr is not None and np.array_equal(arr, openjp2.decode(cs)))
    out: dict[str, Any] = {
        "films": len(streams), "batch": BATCH, "chunk_in_b": chunk, "gpu_batch_in_b": min(chunk, BATCH),
        "ms_one_film_alone": round(alone * 1000, 2),
        "ms_per_film_batched": round(batched * 1000 / len(streams), 2),
        "frames_refused": sum(arr is None for arr in decoded),
        "bit_exact_vs_openjpeg": f"{exact}/{min(8, len(streams))}",
    }
    if decoded[0] is not None:
        out["spot_check"] = spot_check_ms(paths[0], decoded[0])
    del decoded
    out["overview_without_cache"] = overview_from_gpu_copy(paths[0], device)
    sub = films[:landmark_films]
    with _env(gd.ENV, "0"):
        cpu = measurer.measure_images([open_caged(p) for p in sub])
    images = [open_caged(p) for p in sub]
    out["films_swapped"] = gd.gpu_decode(images, device)
    gpu = measurer.measure_images(images)
    out["landmarks_gpu_vs_cpu_decode"] = landmark_differences(gpu, cpu)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cpak_gpu_check"), help="films and CSVs go here")
    ap.add_argument("--data", type=Path, default=None, help="use these films instead of generating")
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--gen-procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gen-limit-s", type=float, default=240.0, help="stop generating after this long")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--net-batch", type=int, default=64, help="crops per forward pass, networks only")
    ap.add_argument("--cpu-films", type=int, default=16)
    ap.add_argument("--capture-mb", type=float, default=4096, help="network inputs kept for the networks-only rate")
    ap.add_argument("--gpu-decode-films", type=int, default=64, help="films whose codestreams (e) decodes on the GPU")
    ap.add_argument("--gpu-landmark-films", type=int, default=8, help="films (e) measures with both decoders")
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    report: dict[str, Any] = {"argv": sys.argv[1:] if argv is None else argv, "commit": _commit()}

    if args.data is None:
        folder = args.out / "films"
        report["generation"] = generate_films(folder, args.count, args.seed, args.gen_procs, args.gen_limit_s)
    else:
        folder = args.data
    from cpak_cli import api
    from cpak_cli.pipeline.decoding import find_inputs

    films = find_inputs(folder)
    if not films:
        raise SystemExit(f"no DICOM films in {folder}")
    args.out.mkdir(parents=True, exist_ok=True)

    batch = api.BatchOptions(workers=args.workers, chunk=args.chunk, overwrite=True)
    options = api.MeasureOptions(weights_dir=args.weights_dir, device=args.device)
    gpu_csv = args.out / "gpu.csv"
    e2e, timers = end_to_end(folder, films, options, batch, gpu_csv, args.capture_mb)
    report["end_to_end"] = e2e
    report["networks_only"] = net = networks_rate(timers, len(films), args.net_batch)
    del timers
    if net and net["films_per_s"]:
        report["end_to_end_over_networks"] = round(e2e["films_per_s"] / net["films_per_s"], 4)
    report["decode"] = decode_rate(films, 4)
    try:
        report["gpu_decode"] = gpu_decode_check(films, api.measurer_for(options), args.device, args.gpu_decode_films,
                                                args.gpu_landmark_films, args.chunk)
    except Exception as exc:  # noqa: BLE001 - a report with the error beats no report
        report["gpu_decode"] = {"error": f"{type(exc).__name__}: {exc}"}

    sub = args.out / "cpu_films"
    sub.mkdir(exist_ok=True)
    for p in films[: args.cpu_films]:
        link = sub / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    cpu_csv = args.out / "cpu.csv"
    cpu_options = api.MeasureOptions(weights_dir=args.weights_dir, device="cpu")
    api.measurer_for(cpu_options)  # models loaded before the clock starts, as on the GPU
    t0 = time.perf_counter()
    api.run_batch(sub, cpu_csv, cpu_options, batch)
    cpu_s = time.perf_counter() - t0
    n_cpu = len(find_inputs(sub))
    report["cpu"] = {"films": n_cpu, "wall_s": round(cpu_s, 2), "films_per_s": round(n_cpu / cpu_s, 3)}
    report["gpu_vs_cpu"] = compare(gpu_csv, cpu_csv)
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
