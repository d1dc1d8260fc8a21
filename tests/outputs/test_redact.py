"""Burned-in text redaction (cpak_cli.outputs.redact): text found and blanked where it was drawn,
the legs' region never touched, lone side-marker letters kept, and the anonymized batch overlay
of a phantom film with its patient-name region black."""

from __future__ import annotations

import numpy as np
import pytest

from cpak_cli.options import BatchOptions
from cpak_cli.outputs import redact as R
from tests.factories import TruthMeasurer, text_film

MM = 0.5  # text_film pixels are drawn for a 0.5 mm film


def _mask(shape, boxes):
    return R.blank_boxes(np.zeros(shape, bool), boxes, True)


def _covered(shape, found, box) -> float:
    """Fraction of the pixels of ``box`` inside the ``found`` boxes."""
    want = _mask(shape, [box])
    return float((_mask(shape, found) & want).sum() / want.sum())


def test_text_lines_found_and_legs_untouched():
    texts = (("DOE^JANE 1961-04-02", (12, 30), 14.0), ("ID 0042 7781", (250, 880), 12.0))
    img, boxes, legs = text_film(texts=texts, dark_texts=(("MRN 4471", (318, 600), 11.0),), seed=1)
    red, info = R.redact_pixels(img, (MM, MM), [legs])
    for text, box in boxes:
        assert _covered(img.shape, info.boxes, box) == 1.0, text
        c0, r0, c1, r1 = R.pixel_range(box)
        assert np.all(red[r0:r1 + 1, c0:c1 + 1] == 0.0), f"{text}: pixels left in its box"
    c0, r0, c1, r1 = R.pixel_range(legs)
    assert np.array_equal(red[r0:r1 + 1, c0:c1 + 1], img[r0:r1 + 1, c0:c1 + 1])
    assert not _mask(img.shape, info.boxes)[r0:r1 + 1, c0:c1 + 1].any()
    # small: the text lines and their halo, nothing else
    text_area = _mask(img.shape, [b for _, b in boxes]).mean()
    assert text_area < info.blanked_fraction < 2.5 * text_area
    assert info.lines_in_legs == 0
    assert np.array_equal(img, text_film(texts=texts, dark_texts=(("MRN 4471", (318, 600), 11.0),), seed=1)[0])


def test_bones_and_noise_alone_are_not_text():
    img, _, _ = text_film(texts=(), seed=3)
    assert R.find_text_boxes(R.to_grey(img), (), MM) == []


def test_text_over_the_legs_is_kept_and_counted():
    img, boxes, legs = text_film(texts=(("PATIENT NAME HERE", (20, 300), 12.0),), seed=2)
    red, info = R.redact_pixels(img, (MM, MM), [legs])
    (_, box), = boxes
    assert info.lines_in_legs == 1
    c0, r0, c1, r1 = R.pixel_range(legs)
    assert np.array_equal(red[r0:r1 + 1, c0:c1 + 1], img[r0:r1 + 1, c0:c1 + 1])
    # the part left of the legs is blanked, the part over them is not
    assert _covered(img.shape, info.boxes, (box[0], box[1], legs[0] - 1, box[3])) == 1.0
    assert R.redact_pixels(img, (MM, MM), [])[1].lines_in_legs == 0


def test_lone_side_marker_kept_initials_below_it_blanked():
    img, boxes, legs = text_film(texts=(("BH 47", (12, 540), 10.0),), marker=("R", (14, 510), 30.0), seed=4)
    found = R.find_text_boxes(R.to_grey(img), [legs], MM)
    initials, marker = (b for _, b in boxes)
    assert _covered(img.shape, found, initials) == 1.0
    assert _covered(img.shape, found, marker) < 0.05
    alone, _, _ = text_film(texts=(), marker=("L", (20, 500), 30.0), seed=4)
    assert R.find_text_boxes(R.to_grey(alone), (), MM) == []


def test_turned_text_found():
    img, boxes, legs = text_film(texts=(("JOHN SMITH", (14, 40), 12.0),), seed=5)
    turned = np.ascontiguousarray(np.rot90(img))  # the text now runs bottom to top
    (_, b), = boxes
    rows = img.shape[1]
    box = (b[1], rows - 1 - b[2], b[3], rows - 1 - b[0])  # rot90: (x, y) -> (y, cols - 1 - x)
    assert _covered(turned.shape, R.find_text_boxes(R.to_grey(turned), (), MM), box) == 1.0


def test_film_boxes_map_back_through_resampling_and_anisotropic_spacing():
    img, boxes, legs = text_film(texts=(("DOE^JANE 1961-04-02", (12, 30), 14.0),), seed=6)
    import cv2

    # the same film at (0.25 row, 0.2 col) mm: 2 x taller, 2.5 x wider in pixels
    fine = cv2.resize(img, (img.shape[1] * 5 // 2, img.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    (_, b), = boxes
    # the text's pixels (its box less the 1 px margin) in the fine film: x' = (x + 0.5) * f - 0.5
    box = ((b[0] + 1.5) * 2.5 - 0.5, (b[1] + 1.5) * 2 - 0.5, (b[2] - 0.5) * 2.5 - 0.5, (b[3] - 0.5) * 2 - 0.5)
    found = R.film_text_boxes(fine, (0.25, 0.2))
    assert _covered(fine.shape, found, box) == 1.0
    assert all(0 <= v[0] <= v[2] <= fine.shape[1] - 1 and 0 <= v[1] <= v[3] <= fine.shape[0] - 1 for v in found)


@pytest.mark.parametrize("cut", [(2, 2, 5, 5), (-3, -3, 20, 20), (4, -1, 6, 30), (30, 30, 40, 40), (0, 0, 9, 0)])
def test_subtract_box_covers_exactly_the_rest(cut):
    box = (0.0, 0.0, 9.0, 9.0)
    pieces = R.subtract_box(box, cut)
    shape = (12, 12)
    assert np.array_equal(_mask(shape, pieces), _mask(shape, [box]) & ~_mask(shape, [cut]))
    overlap = sum((_mask(shape, [p]).astype(int) for p in pieces), np.zeros(shape, int))
    assert overlap.max() <= 1  # disjoint pieces


def test_protected_boxes_cover_joint_boxes_landmarks_and_shafts():
    boxes = {"right": {"hip": (40.0, 40.0, 100.0, 100.0), "ankle": (60.0, 700.0, 100.0, 740.0)}}
    points = {"right": {"femoral_head": (70.0, 70.0), "knee_center": (75.0, 400.0), "ankle_lateral": None}}
    prot = R.protected_boxes(boxes, points, (0.5, 0.5), margin_mm=5.0, shaft_half_mm=20.0)
    m = _mask((800, 200), prot)
    assert m[30:111, 30:111].all() and m[690:751, 50:111].all()  # boxes + 10 px
    # the shaft from hip centre (70, 70) to ankle centre (80, 720), 40 px either side
    for y in range(70, 721, 25):
        x = 70 + (y - 70) * 10 / 650
        assert m[y, int(x) - 39:int(x) + 40].all()
    assert not m[400, :20].any() and not m[400, 140:].any()


def test_phantom_text_boxes_cover_the_drawn_text():
    from cpak_cli.phantom import make_case
    from cpak_cli.phantom.render import _draw_text_mask, _scene, text_boxes

    case = make_case(3, 1, max_size=1600, imager_spacing_fraction=0.0)
    scene = _scene(case)
    named = text_boxes(case, marker=True)
    assert [t for t, _ in named][0] == "PHANTOM^CASE0001" and [t for t, _ in named][-1] in ("L", "R")
    for item, (text, box) in zip(list(scene.text) + [scene.marker], named):
        m = _draw_text_mask(case.shape, [item], (0, 0, case.shape[1], case.shape[0]), case.spacing_mm)
        ys, xs = np.nonzero(m)
        assert box[0] <= xs.min() and xs.max() <= box[2] and box[1] <= ys.min() and ys.max() <= box[3], text


def test_batch_anonymized_overlay_blanks_the_phantom_name(tmp_path):
    import cv2

    from cpak_cli.phantom import make_case, write_case
    from cpak_cli.phantom.render import text_boxes
    from cpak_cli.pipeline.batch import run_batch

    case = make_case(3, 1, max_size=1600, imager_spacing_fraction=0.0)
    dcm = write_case(case, tmp_path / "in")["dicom"]
    name_box = dict(text_boxes(case))["PHANTOM^CASE0001"]
    measurer = TruthMeasurer(case.landmarks, case.boxes)
    pngs = {}
    for salt in (None, "s3cret"):
        out = tmp_path / f"{salt}"
        run_batch([dcm], out / "rows.csv", measurer, BatchOptions(workers=1, overlays=out / "png", anonymize_salt=salt))
        (png,) = (out / "png").glob("*.png")
        pngs[salt] = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        assert "overlay_not_written" not in (out / "rows.csv").read_text()
    scale = pngs[None].shape[0] / case.shape[0]  # the overlay keeps the film's pixels up to 2000 rows
    x0, y0, x1, y1 = (int(np.floor(v * scale)) for v in name_box)
    plain, anonymized = pngs[None][y0:y1 + 1, x0:x1 + 1], pngs["s3cret"][y0:y1 + 1, x0:x1 + 1]
    assert plain.max() > 150 and plain.std() > 20  # the name is readable without --anonymize
    assert anonymized.max() <= 5  # and black with it
    # outside the text and the drawn labels the two overlays are the same picture
    legs = R.protected_boxes(case.boxes, case.landmarks, case.spacing_mm)
    for b in legs:
        c0, r0, c1, r1 = (int(round(v * scale)) for v in b)
        c0, r0 = max(c0, 0), max(r0, 0)
        diff = np.abs(pngs[None][r0:r1, c0:c1].astype(int) - pngs["s3cret"][r0:r1, c0:c1].astype(int))
        assert np.percentile(diff, 99) <= 2


def test_batch_flags_text_reaching_into_the_legs(tmp_path):
    from cpak_cli.pipeline.batch import run_batch
    from tests.factories import make_dx, write

    rows_by_text = {}
    for name, origin in (("clear", (12, 30)), ("over", (20, 300))):
        img, _, legs = text_film(texts=(("PATIENT NAME HERE", origin, 12.0),), seed=7)
        dcm = write(make_dx(np.round(img * 4000).astype(np.uint16), pixel_spacing=(MM, MM)), tmp_path / f"{name}.dcm")
        centre = ((legs[0] + legs[2]) / 2, (legs[1] + legs[3]) / 2)
        measurer = TruthMeasurer({"right": {"knee_center": centre}}, {"right": {"knee": legs}})
        out = tmp_path / name
        run_batch([dcm], out / "rows.csv", measurer, BatchOptions(workers=1, overlays=out / "png", anonymize_salt="s"))
        rows_by_text[name] = (out / "rows.csv").read_text()
        assert len(list((out / "png").glob("*.png"))) == 1
    assert "overlay_text_in_legs" in rows_by_text["over"]
    assert "overlay_text_in_legs" not in rows_by_text["clear"]


def test_a_lazily_decoded_film_is_redacted_too(tmp_path):
    """A JPEG 2000 film opened piecewise (FilmSource) is blanked through the same path: the copy is
    a plain LoadedImage with the film's metadata and the redacted pixels (regression: the batch's
    anonymized overlays of J2K films were not written)."""
    from cpak_cli.input.film_source import FilmSource
    from cpak_cli.input.loader import open_film
    from tests.factories import make_j2k_dx, measured_result, write

    path = write(make_j2k_dx(pixel_spacing=(0.5, 0.5)), tmp_path / "j2k.dcm")
    image = open_film(path)
    assert isinstance(image, FilmSource)
    result = measured_result(image, {})
    redacted, _ = R.redact_result(result, protected=[])
    assert type(redacted.image).__name__ == "LoadedImage" and redacted.image is not image
    assert redacted.image.spacing_mm == image.spacing_mm and redacted.image.path == image.path
    assert redacted.image.pixels.shape == image.pixels.shape
    assert result.image is image  # the original result is not changed
