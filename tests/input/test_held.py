"""Films decoded in full stay in their decode worker: the parent gets a HeldFilm whose crops and
detector input are made in the worker, bit-identical to crops of the whole array, and only
crops cross the pipe until something reads the pixels."""

import os
import pickle
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import reduction
from pathlib import Path

import numpy as np
import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.input import cage as cage_mod
from cpak_cli.input import held as held_mod
from cpak_cli.input.cage import Cage, DecodeLimits, open_caged
from cpak_cli.input.held import HeldFilm, HeldStore
from cpak_cli.input.image import LoadedImage
from cpak_cli.input.loader import load_image, open_film
from cpak_cli.networks.crops import crop_matrix, frame_matrix, sample_crop
from cpak_cli.networks.detector import detector_frame, detector_input
from tests.factories import make_dx, write, write_plain_film

#: crop matrices: inside, reaching out of the film on every side, mirrored, down-sampling by
#: 1.6-12x (the Gaussian low-pass), up-sampling, a non-square frame
MATRICES = [
    (crop_matrix((20, 40, 120, 140), 64), 64),
    (crop_matrix((-60, -30, 90, 120), 64, mirror=True), 64),
    (crop_matrix((150, 500, 330, 680), 32), 32),
    (crop_matrix((0, 0, 240, 600), 50), 50),
    (crop_matrix((100, 200, 110, 210), 40), 40),
    (frame_matrix((-20, -50, 260, 650), 48, 128, mirror=True), (48, 128)),
]


def crash_on_segv(op: str, path: str) -> None:
    """Test hook run in the decode worker: a file named ``*segv*`` crashes it when opened."""
    if "segv" in Path(path).name and op == "open":
        os.kill(os.getpid(), signal.SIGSEGV)


def log_requests(op: str, path: str) -> None:
    """Test hook run in the decode worker: one line ``PID OP NAME`` per request, appended to
    ``$CPAK_TEST_REQUEST_LOG``; an open takes 0.3 s more (films opened at once use every worker)."""
    with open(os.environ["CPAK_TEST_REQUEST_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {op} {Path(path).name}\n")
    if op == "open":
        time.sleep(0.3)


@pytest.fixture
def request_log(tmp_path, monkeypatch):
    log = tmp_path / "requests.log"
    monkeypatch.setenv("CPAK_TEST_REQUEST_LOG", str(log))
    return log


def requests(log: Path) -> list[list[str]]:
    """The logged requests, ``[pid, op, name]`` each."""
    return [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []


def cage_with(workers: int = 1, hook=None) -> Cage:
    cage = Cage(DecodeLimits(seconds=30.0, memory_mb=2000), workers=workers, start_method="fork", hook=hook)
    cage_mod.configure(cage)
    return cage


@pytest.fixture
def cage():
    old = cage_mod.configure(None)
    made = []
    yield lambda workers=1, hook=None: made.append(cage_with(workers, hook)) or made[-1]
    for c in made:
        c.close()
    cage_mod.configure(old)


@pytest.fixture
def received(monkeypatch):
    """Sizes (bytes) of every message this process unpickles from a pipe (the cage's replies)."""
    sizes: list[int] = []
    loads = reduction.ForkingPickler.loads

    def recording(buf, *args, **kwargs):
        sizes.append(len(buf))
        return loads(buf, *args, **kwargs)

    monkeypatch.setattr(reduction.ForkingPickler, "loads", staticmethod(recording))
    return sizes


@pytest.fixture
def film(tmp_path):
    """An uncompressed 12-bit film, 640 x 240, textured (no two crops alike)."""
    return write_plain_film(tmp_path / "plain.dcm", 640, 240, seed=3)


def test_a_film_decoded_in_full_comes_back_held_and_its_crops_are_bit_identical(cage, film, received):
    cage()
    image = open_caged(film)
    full = load_image(film).pixels
    assert isinstance(image, HeldFilm) and image.decodes_on_demand
    assert (image.rows, image.cols) == full.shape and image.meta() == load_image(film).meta()
    for matrix, size in MATRICES:
        crop = sample_crop(image, matrix, size)
        assert crop.dtype == np.float32 and np.array_equal(crop, sample_crop(full, matrix, size)), (matrix, size)
    # the detector's default input came with the film; another frame is made in the worker
    for width, height in ((160, 384), (48, 128)):
        frame = detector_frame(full.shape, image.spacing_mm, image.patient_right_on_image_left, width, height)
        assert np.array_equal(detector_input(image, frame), detector_input(full, frame))
    assert max(received) < full.nbytes / 2  # only crops (the largest: the detector input) crossed the pipe


def test_the_default_detector_input_needs_no_round_trip(cage, film, received):
    cage()
    image = open_caged(film)
    n = len(received)
    frame = detector_frame((image.rows, image.cols), image.spacing_mm, image.patient_right_on_image_left)
    assert np.array_equal(detector_input(image, frame), detector_input(load_image(film).pixels, frame))
    assert len(received) == n


def test_what_crosses_the_pipe_for_a_large_film_is_small(cage, tmp_path, received):
    path = write_plain_film(tmp_path / "large.dcm", 3000, 1200, seed=1)
    cage()
    image = open_caged(path)
    film_bytes = 3000 * 1200 * 4
    assert isinstance(image, HeldFilm) and received[-1] < 512 * 1024 < film_bytes / 20  # the open's reply
    crop = sample_crop(image, crop_matrix((400, 1200, 800, 1600), 256), 256)
    assert crop.shape == (256, 256) and received[-1] < 300 * 1024
    assert image.pixels.shape == (3000, 1200) and received[-1] > film_bytes  # fetched when read


def test_pixels_are_fetched_once_when_read_and_a_pickled_held_film_is_a_plain_image(cage, film, received):
    cage()
    image = open_caged(film)
    full = load_image(film)
    sample_crop(image, *MATRICES[0])
    assert max(received) < full.pixels.nbytes
    assert np.array_equal(image.pixels, full.pixels) and max(received) > full.pixels.nbytes
    n = len(received)
    assert image.pixels is image.pixels and len(received) == n
    # once here, crops are cut from them (same values, no round trip)
    assert np.array_equal(sample_crop(image, *MATRICES[2]), sample_crop(full.pixels, *MATRICES[2]))
    assert len(received) == n
    copy = pickle.loads(pickle.dumps(open_caged(film)))
    assert type(copy) is LoadedImage and np.array_equal(copy.pixels, full.pixels) and copy.meta() == full.meta()


def test_requests_for_a_held_film_go_to_the_worker_that_holds_it(cage, tmp_path, request_log):
    cage(workers=2, hook=log_requests)
    paths = [write_plain_film(tmp_path / f"f{i}.dcm", 320, 120, seed=i) for i in range(4)]
    with ThreadPoolExecutor(2) as pool:
        images = list(pool.map(open_caged, paths))
    opened = {name: pid for pid, op, name in requests(request_log) if op == "open"}
    assert len(set(opened.values())) == 2
    for _ in range(3):
        for image in images:
            sample_crop(image, *MATRICES[0])
    for pid, op, name in requests(request_log):
        if op == "held":
            assert pid == opened[name]


def test_an_evicted_film_is_opened_again_by_its_worker(cage, tmp_path, monkeypatch):
    monkeypatch.setattr(held_mod, "KEEP_HELD", 1)  # before the worker forks
    cage()
    a, b = (write_plain_film(tmp_path / f"{n}.dcm", 320, 120, seed=i) for i, n in enumerate("ab"))
    held_a, held_b = open_caged(a), open_caged(b)  # one worker: b's arrival drops a
    for image, path in ((held_a, a), (held_b, b), (held_a, a)):
        for matrix, size in MATRICES:
            assert np.array_equal(sample_crop(image, matrix, size), sample_crop(load_image(path).pixels, matrix, size))


def test_the_store_keeps_a_bounded_number_of_films_and_opens_a_missing_one_again(film, tmp_path, monkeypatch):
    monkeypatch.setattr(held_mod, "KEEP_HELD", 2)
    other = write_plain_film(tmp_path / "other.dcm", 320, 120, seed=5)
    store = HeldStore(7, budget=2**30)
    keys = [store.hold(open_film(p)).key for p in (film, other, film)]
    assert list(store.films) == keys[1:]  # the oldest went first
    matrix, size = MATRICES[2]
    worker, crop = store.answer(keys[0], str(film), None, None, "sample", (matrix, size))
    assert worker == 7 and keys[0] in store.films and list(store.films)[-1] == keys[0]
    assert np.array_equal(crop, sample_crop(load_image(film).pixels, matrix, size))
    # at most the budget of pixels besides the newest film
    small = HeldStore(7, budget=load_image(film).pixels.nbytes)
    first, second = small.hold(open_film(film)).key, small.hold(open_film(other)).key
    assert list(small.films) == [second] and first not in small.films
    assert small.answer(second, str(other), None, None, "release", None) == (None, None) and not small.films
    worker, pixels = small.answer(first, str(film), None, None, "pixels", None)  # not held: decoded, not kept
    assert worker is None and np.array_equal(pixels, load_image(film).pixels) and not small.films


def test_a_held_film_outlives_its_worker(cage, film, tmp_path):
    made = cage(hook=crash_on_segv)
    bad = write(make_dx(), tmp_path / "b_segv.dcm")
    image = open_caged(film)
    expected = [sample_crop(load_image(film).pixels, m, s) for m, s in MATRICES]
    with pytest.raises(CpakInputError, match="crashed"):
        open_caged(bad)  # the worker holding the film dies on another film
    assert [np.array_equal(sample_crop(image, m, s), e) for (m, s), e in zip(MATRICES, expected)] == [True] * 6
    # a worker killed from outside while idle is replaced, and no film is blamed for it
    os.kill(made._idle[0].proc.pid, signal.SIGKILL)
    made._idle[0].proc.join(5)
    assert np.array_equal(sample_crop(image, *MATRICES[1]), expected[1])


def test_release_drops_the_film_from_its_worker_and_never_raises(cage, film):
    made = cage()
    image = open_caged(film)
    worker, _ = made.held(image._key, image._reload, "pixels")
    assert worker is not None  # held
    image.release()
    image.release()
    worker, pixels = made.held(image._key, image._reload, "pixels")
    assert worker is None and np.array_equal(pixels, load_image(film).pixels)  # dropped
    # reads after a release still work (the film is opened again)
    assert np.array_equal(sample_crop(image, *MATRICES[3]), sample_crop(load_image(film).pixels, *MATRICES[3]))
    made.close()
    image.release()  # nobody to tell: still no error
    gone = open_caged(film)
    for w in list(made._idle):
        os.kill(w.proc.pid, signal.SIGKILL)
    gone.release()


def test_measuring_a_held_film_equals_measuring_the_film_in_process(cage, tmp_path, tiny_weights, one_torch_thread):
    from cpak_cli import api
    from cpak_cli.input.boxes import read_boxes
    from cpak_cli.pipeline.film import Measurer
    from tests.factories import phantom_folder

    cage()
    path = sorted(phantom_folder(tmp_path / "ph", seed=7, count=1).glob("*.dcm"))[0]
    boxes = path.with_name(path.stem + ".boxes.json")
    assert isinstance(open_caged(path), HeldFilm)
    options = api.MeasureOptions(weights_dir=tiny_weights, device="cpu")
    for box_file in (None, boxes):  # the detector's boxes (tiny model: its own frame), the file's
        held = api.measure_file(path, options, boxes=box_file).to_json()
        measurer = Measurer(weights_dir=tiny_weights, device="cpu", need_detector=box_file is None)  # in process
        plain = measurer.measure(load_image(path), None if box_file is None else read_boxes(box_file)).to_json()
        assert held == plain
    assert plain["legs"] and all(leg["landmarks"] for leg in plain["legs"].values())
