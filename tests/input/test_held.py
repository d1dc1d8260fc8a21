"""Films decoded in full stay in their decode worker: the parent gets a HeldFilm whose crops and
detector input are made in the worker, bit-identical to crops of the whole array, and only
crops cross the pipe until something reads the pixels."""

import gc
import os
import pickle
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.input import held as held_mod
from cpak_cli.input.cage import open_caged
from cpak_cli.input.held import HeldFilm, HeldStore
from cpak_cli.input.image import LoadedImage
from cpak_cli.input.loader import load_image, open_film
from cpak_cli.networks.crops import crop_matrix, frame_matrix, sample_crop
from cpak_cli.networks.detector import detector_frame, detector_input
from tests.factories import crash_on_segv, log_requests, logged_requests, make_dx, write, write_plain_film

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
    opened = {name: pid for pid, op, name in logged_requests(request_log) if op == "open"}
    assert len(set(opened.values())) == 2
    for _ in range(3):
        for image in images:
            sample_crop(image, *MATRICES[0])
    for pid, op, name in logged_requests(request_log):
        if op == "held":
            assert pid == opened[name]


def test_a_film_dropped_past_the_memory_share_is_opened_again_by_its_worker(cage, tmp_path, monkeypatch,
                                                                           worker_loads):
    monkeypatch.setattr(held_mod, "HELD_SHARE", 0.0)  # before the worker forks: only the newest film is kept
    cage()
    a, b = (write_plain_film(tmp_path / f"{n}.dcm", 320, 120, seed=i) for i, n in enumerate("ab"))
    held_a, held_b = open_caged(a), open_caged(b)  # one worker: b's arrival drops a
    assert held_a._worker == held_b._worker and worker_loads() == []
    for image, path in ((held_a, a), (held_b, b), (held_a, a)):
        for matrix, size in MATRICES:
            assert np.array_equal(sample_crop(image, matrix, size), sample_crop(load_image(path).pixels, matrix, size))
    # a opened again (its first crop), then b after it, then a once more; every crop after the
    # first of each visit came from the film held again
    assert [name for _, name in worker_loads()] == ["a.dcm", "b.dcm", "a.dcm"]


def test_the_store_drops_films_only_past_its_budget_and_opens_a_missing_one_again(film, tmp_path):
    other = write_plain_film(tmp_path / "other.dcm", 320, 120, seed=5)
    size = load_image(film).pixels.nbytes
    store = HeldStore(7, budget=2**30)
    keys = [store.hold(open_film(p)).key for p in (film, other, film, other) * 5]
    assert list(store.films) == keys  # no count limit: every film stays until released
    store.drop(keys[:-1] + ["unknown"])
    assert list(store.films) == keys[-1:]
    matrix, size2 = MATRICES[2]
    worker, crop = store.answer(keys[0], str(film), None, None, "sample", (matrix, size2))
    assert worker == 7 and list(store.films) == [keys[-1], keys[0]]  # opened again, held, the newest
    assert np.array_equal(crop, sample_crop(load_image(film).pixels, matrix, size2))
    # at most the budget of pixels besides the newest film
    small = HeldStore(7, budget=size + load_image(other).pixels.nbytes)
    first, second = small.hold(open_film(film)).key, small.hold(open_film(other)).key
    assert list(small.films) == [first, second]  # just the budget
    third = small.hold(open_film(film)).key
    assert list(small.films) == [second, third]
    small.drop([second, third])
    assert not small.films and not small.drop_all()
    worker, pixels = small.answer(first, str(film), None, None, "pixels", None)  # not held: decoded, not kept
    assert worker is None and np.array_equal(pixels, load_image(film).pixels) and not small.films
    with pytest.raises(ValueError, match="unknown held-film request"):
        small.answer(first, str(film), None, None, "release", None)


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
    lost = open_caged(film)  # a film nobody can read any more is released too
    key, reload, holder = lost._key, lost._reload, lost._worker
    del lost
    gc.collect()
    assert made.held(key, reload, "pixels", None, holder)[0] is None
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


def test_outputs_read_the_pixels_the_worker_holds_instead_of_decoding_the_film_again(
        cage, tmp_path, tiny_weights, one_torch_thread, request_log, worker_loads):
    """Overlays and report thumbnails of a batch, and measure_file's overlay, read the held
    film's pixels: the films are released after their outputs are written, not before."""
    from cpak_cli import api
    from tests.factories import phantom_folder

    cage(hook=log_requests)
    folder = phantom_folder(tmp_path / "ph", seed=7, count=2)
    films = sorted(folder.glob("*.dcm"))
    options = api.MeasureOptions(weights_dir=tiny_weights, device="cpu")
    (tmp_path / "ov").mkdir()
    batch = api.BatchOptions(workers=1, chunk=1, overlays=tmp_path / "ov", report=tmp_path / "report.html")
    api.run_batch(folder, tmp_path / "out.csv", options, batch)
    assert len(list((tmp_path / "ov").glob("*.png"))) == len(films)  # every film had a leg
    assert len(list((tmp_path / "out.csv.thumbs").glob("*.jpg"))) == len(films)
    api.measure_file(films[0], options, api.FilmOutputs(overlay=tmp_path / "one.png"))
    assert (tmp_path / "one.png").exists()
    opens = [name for _, op, name in logged_requests(request_log) if op == "open"]
    assert sorted(opens) == sorted([f.name for f in films] + [films[0].name])
    assert worker_loads() == []  # each film decoded once, when opened
