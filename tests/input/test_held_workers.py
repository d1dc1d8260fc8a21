"""Held films under stress: crop threads on a film whose worker died or that was released, a
release while a crop is in flight, a request timeout while another thread waits for that worker,
films filling a worker's memory limit, and forkserver workers."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cpak_cli.errors import CpakInputError, CpakMemoryError
from cpak_cli.input import held as held_mod
from cpak_cli.input.cage import open_caged
from cpak_cli.input.cage_worker import _no_memory
from cpak_cli.input.held import HeldFilm
from cpak_cli.input.loader import load_image
from cpak_cli.networks.crops import crop_matrix, sample_crop
from tests.factories import log_requests, write_plain_film

ROOT = Path(__file__).resolve().parents[2]

#: crops of a 640 x 240 film, all different
JOBS = [(crop_matrix((10 + 20 * i, 40 + 50 * i, 110 + 20 * i, 140 + 50 * i), 48, mirror=i % 2 == 1), 48)
        for i in range(8)]


def truth(path: Path) -> list[np.ndarray]:
    pixels = load_image(path).pixels
    return [sample_crop(pixels, m, s) for m, s in JOBS]


def idle_worker(cage, wid: int):
    return next(w for w in cage._idle if w.wid == wid)


@pytest.mark.parametrize("how", ["its worker died", "it was released"])
def test_crop_threads_open_a_film_again_once(cage, film, worker_loads, monkeypatch, how):
    monkeypatch.setenv("CPAK_TEST_LOAD_DELAY", "0.3")  # the threads surely meet while it is opened again
    made = cage(workers=4)
    made.ensure(4)
    image = open_caged(film)
    first = image._worker
    if how == "its worker died":
        w = idle_worker(made, first)
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.join(5)
    else:
        image.release()
    with ThreadPoolExecutor(4) as pool:  # make_crops' threads
        crops = list(pool.map(lambda job: sample_crop(image, *job), JOBS))
    assert all(np.array_equal(c, t) for c, t in zip(crops, truth(film)))
    loads = worker_loads()
    assert len(loads) == 1  # one thread opened it again, the others asked that worker
    holder = idle_worker(made, image._worker)
    assert not image._released and int(loads[0][0]) == holder.proc.pid
    if how == "its worker died":
        assert image._worker != first


def test_a_release_while_a_crop_is_in_flight_returns_at_once_and_wins(cage, tmp_path, request_log):
    made = cage(hook=log_requests)
    path = write_plain_film(tmp_path / "slow.dcm", 640, 240, seed=4)  # each request about it: 0.5 s
    image = open_caged(path)
    holder = image._worker
    with ThreadPoolExecutor(1) as pool:
        crop = pool.submit(sample_crop, image, *JOBS[0])
        time.sleep(0.2)  # the crop's request is in the worker
        t0 = time.monotonic()
        image.release()
        took = time.monotonic() - t0
        assert np.array_equal(crop.result(), truth(path)[0])
    assert took < 0.1  # never waits for the busy worker
    assert image._released  # the crop's answer did not mark the film held again
    worker, pixels = made.held(image._key, image._reload, "pixels", None, holder)
    assert worker is None  # the drop went with this request: the worker no longer holds it
    assert np.array_equal(pixels, load_image(path).pixels)
    image.release()  # idempotent


def test_a_request_timeout_while_another_thread_waits_for_that_worker(cage, tmp_path, request_log):
    made = cage(workers=1, hook=log_requests, seconds=1.5)
    path = write_plain_film(tmp_path / "plain.dcm", 640, 240, seed=2)
    image, hung = open_caged(path), open_caged(write_plain_film(tmp_path / "hang.dcm", 320, 120))
    holder = image._worker
    assert hung._worker == holder
    made.ensure(2)  # a second worker, idle
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(sample_crop, hung, *JOBS[0])  # 60 s in the worker: killed after 1.5 s
        time.sleep(0.3)
        waiting = pool.submit(sample_crop, image, *JOBS[1])  # waits for that worker
        with pytest.raises(CpakInputError, match="took longer than 1.5 s"):
            stuck.result(timeout=30)
        crop = waiting.result(timeout=30)  # served: the film opened again in another worker
    assert np.array_equal(crop, truth(path)[1])
    assert image._worker not in (holder, None) and not made._waiting - Counter()
    assert np.array_equal(sample_crop(image, *JOBS[2]), truth(path)[2])  # and it stays there


def test_running_out_of_memory_while_loading_is_a_distinct_input_error(film, monkeypatch):
    """The loader's one line for MemoryError is a CpakMemoryError, which a worker holding films
    answers by dropping them and trying once more (see the next test)."""
    from cpak_cli.input import loader

    def no_memory(path):
        raise MemoryError

    monkeypatch.setattr(loader, "read_head", no_memory)
    with pytest.raises(CpakMemoryError, match="out of memory") as err:
        loader.load_image(film)
    assert isinstance(err.value, CpakInputError) and err.value.path == str(film)
    with pytest.raises(CpakMemoryError):
        loader.open_film(film)
    assert _no_memory(err.value) and _no_memory(MemoryError())
    assert not _no_memory(CpakInputError(film, "no pixel data")) and not _no_memory(ValueError("x"))


def fill_a_worker(folder: str) -> None:
    """Run in a fresh process (a worker forked from the test process would inherit its free heap
    and hold films there beyond its limit): one worker under a 150 MB limit, whose held films may
    fill it (HELD_SHARE 100), opens an 8 MB film 25 times. Writes JSON to stdout: what each open
    gave, whether the first film is still held, whether a crop of the last is right."""
    import json
    import sys

    from cpak_cli.input.cage import Cage, DecodeLimits

    held_mod.HELD_SHARE = 100.0
    path = write_plain_film(Path(folder) / "big.dcm", 2000, 1000, seed=1)
    made = Cage(DecodeLimits(30.0, 150), workers=1, start_method="fork")
    opened = []
    for _ in range(25):  # 200 MB held without the drops
        try:
            opened.append(made.open(str(path)))
        except CpakInputError as exc:
            opened.append(exc.reason)
    first = made.held(opened[0]._key, opened[0]._reload, "pixels", None, opened[0]._worker)[0]
    right = isinstance(opened[-1], HeldFilm) and np.array_equal(sample_crop(opened[-1], *JOBS[3]),
                                                                 sample_crop(load_image(path).pixels, *JOBS[3]))
    made.close()
    sys.stdout.write(json.dumps({"opened": [type(o).__name__ if isinstance(o, HeldFilm) else o for o in opened],
                                 "first_held_by": first, "last_crop_right": bool(right)}))


def test_films_that_fill_the_memory_limit_still_open(tmp_path):
    """Held films are dropped when a request runs out of memory, and it runs once more."""
    code = f"from tests.input.test_held_workers import fill_a_worker; fill_a_worker({str(tmp_path)!r})"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["opened"] == ["HeldFilm"] * 25
    assert out["first_held_by"] is None  # dropped to make room
    assert out["last_crop_right"]


def _address_space(pid: int) -> tuple[int, int]:
    """(VmSize, soft RLIMIT_AS) of process ``pid``, bytes."""
    status = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
    limit = next(ln for ln in Path(f"/proc/{pid}/limits").read_text().splitlines() if ln.startswith("Max address space"))
    return int(status["VmSize"].split()[0]) * 1024, int(limit.split()[3])


def test_forkserver_workers_make_bit_identical_crops_with_opencv_loaded_before_the_limit(cage, tmp_path):
    made = cage(start_method="forkserver", memory_mb=2000)
    path = write_plain_film(tmp_path / "a.dcm", 3000, 1200, seed=2)
    image = open_caged(path)
    full = load_image(path).pixels
    jobs = [(crop_matrix((x, y, x + w, y + w), 256), 256)
            for x, y, w in ((0, 0, 1200), (300, 900, 700), (-200, 2500, 900), (500, 1500, 100))]
    assert all(np.array_equal(sample_crop(image, m, s), sample_crop(full, m, s)) for m, s in jobs)
    vm, limit = _address_space(made._idle[0].proc.pid)
    used = vm - (limit - 2000 * 2**20)  # what the worker mapped after setting its limit
    assert used < 200 * 2**20  # the held film (14 MB), its decode, crops; OpenCV (about 400 MB) was mapped before
