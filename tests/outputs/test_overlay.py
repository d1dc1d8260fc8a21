"""Overlay drawing: per-leg numbers that add up, flags in their colour, text legible at viewer
size with an outline that sits on the letters, and a scale bar of the right length in mm."""

from __future__ import annotations

import numpy as np
import pytest

from cpak_cli.core.measurement import measure_leg
from cpak_cli.input.loader import load_image
from cpak_cli.outputs import overlay
from cpak_cli.outputs.flags import TYPE_REMOVING_FLAGS, removes_type
from cpak_cli.outputs.overlay import AMBER, RED, WHITE, draw_scale_bar, font_scale, leg_lines, put_text
from tests.factories import FakeMeasurer, build_leg, gradient, make_dx, write

SP = (0.15, 0.15)


def _text(line):
    return line if isinstance(line, str) else line[0]


def _colour(line):
    return WHITE if isinstance(line, str) else line[1]


def test_leg_lines_numbers_add_up_and_flags_have_their_colour():
    leg = measure_leg("right", build_leg(87.44793, 86.75047), SP)  # aHKA -0.697 alone rounds to -0.7
    leg.flags += ["low_confidence", "joint_disagreement"]
    lines = leg_lines(leg)
    assert _text(lines[0]) == "RIGHT  CPAK II" and _colour(lines[0]) == WHITE
    assert "LDFA 87.4  MPTA 86.8" in [_text(x) for x in lines]
    assert "aHKA -0.6  JLO 174.2" in [_text(x) for x in lines]  # printed MPTA - LDFA, as the tables
    colours = {_text(x): _colour(x) for x in lines}
    assert colours["low_confidence"] == AMBER and colours["joint_disagreement"] == RED


def test_untyped_and_unmeasured_legs_say_so_in_red():
    swapped = build_leg(87.0, 84.0, side="left")
    swapped["ankle_lateral"], swapped["ankle_medial"] = swapped["ankle_medial"], swapped["ankle_lateral"]
    untyped = measure_leg("left", swapped, SP)
    assert untyped.cpak is None and "implausible_geometry" in untyped.flags
    lines = leg_lines(untyped)
    assert lines[0] == ("LEFT  no CPAK type", RED)
    assert ("implausible_geometry", RED) in lines
    partial = measure_leg("right", {**build_leg(87.0, 84.0), "ankle_lateral": None}, SP)
    lines = leg_lines(partial)
    assert lines[0] == ("RIGHT  not measured", RED)
    assert "LDFA 87.0  MPTA -" in [_text(x) for x in lines] and (partial.error, RED) in lines


@pytest.mark.parametrize("flag", sorted(TYPE_REMOVING_FLAGS))
def test_red_flags_are_the_ones_that_remove_the_type(flag):
    assert removes_type(flag)
    for info in ("borderline", "low_confidence", "orientation_assumed", "spacing_user_supplied", "new_flag"):
        assert not removes_type(info)


def test_number_lines_are_one_table_to_extend(monkeypatch):
    leg = measure_leg("right", build_leg(87.0, 84.0), SP)
    lines = [_text(x) for x in leg_lines(leg)]
    assert f"mHKA {leg.mhka:.1f}  JLCA {leg.jlca:.1f}" in lines and f"MAD {leg.mad_mm:.1f} mm" in lines
    monkeypatch.setattr(overlay, "NUMBER_LINES", overlay.NUMBER_LINES + ((("XYZ", "xyz", ""), ("Q", "q", " mm")),))
    leg.q = 12.34  # type: ignore[attr-defined]
    assert "XYZ -  Q 12.3 mm" in [_text(x) for x in leg_lines(leg)]


def test_font_scales_with_height_and_shrinks_for_narrow_films():
    lines = ["LDFA 87.4  MPTA 86.8"]
    assert font_scale(2000, 2000, lines) == pytest.approx(2 * font_scale(1000, 1000, lines), rel=0.01)
    assert font_scale(2000, 300, lines) < font_scale(2000, 2000, lines)


def test_outline_sits_on_the_letters():
    """White text on a white film stays readable (dark outline) and the outline ends where the
    letters end (OpenCV 5 draws thicker text wider: an outline drawn that way drifts right)."""
    import cv2

    out = np.full((80, 600, 3), 255, np.uint8)
    fs = 1.0
    put_text(out, "LDFA 87.4  MPTA 86.8", (10, 50), fs, WHITE)
    dark = np.where(out[:, :, 0] < 60)
    assert dark[0].size > 200
    width = cv2.getTextSize("LDFA 87.4  MPTA 86.8", 0, fs, overlay._thickness(fs))[0][0]
    halo = max(1, round(overlay._cap(fs) / 6))
    assert dark[1].min() >= 10 - halo - 1 and dark[1].max() <= 10 + width + halo + 1


@pytest.mark.parametrize("mm_per_px,width,want", [(0.5, 1000, 100.0), (0.5, 400, 50.0), (2.0, 25, 10.0)])
def test_scale_bar_length_in_mm(mm_per_px, width, want):
    out = np.zeros((300, width, 3), np.uint8)
    assert draw_scale_bar(out, mm_per_px, 0.6, bottom=290) == want
    row = np.where(out[286, :, 0] > 200)[0]  # the bar lies 4 rows above bottom
    assert row.max() - row.min() == pytest.approx(want / mm_per_px, abs=2)


def test_overlay_of_a_film_draws_red_for_a_type_removing_flag_only(tmp_path):
    """A whole film through overlay_for_result: a leg out of range gets red text, a clean film none."""
    path = write(make_dx(pixels=gradient(560, 280, scale=2), pixel_spacing=(2.0, 2.0)), tmp_path / "f.dcm")
    image = load_image(path)

    def reds(legs):
        res = FakeMeasurer(legs=lambda _: legs).measure(image)
        bgr = overlay.overlay_for_result(res, max_height=500)
        assert bgr.shape[0] == 500 and bgr.shape[1] == 250  # 2 mm square pixels, scaled to 500 rows
        near = np.abs(bgr.astype(int) - np.array(RED)).sum(axis=2) < 40
        return int(near.sum())

    assert reds({"right": (87.0, 84.0, -3.0)}) == 0
    assert reds({"right": (108.0, 84.0, -3.0)}) > 30  # LDFA 108: angle_out_of_range, drawn red


@pytest.mark.parametrize("text", ["missing landmark(s): ankle_lateral, ankle_medial",
                                  "spacing_uncorrected_magnification", "low_confidence"])
def test_long_lines_wrap_at_spaces_then_underscores(text):
    import cv2

    lines = overlay._wrap(text, 0.6, 180)
    assert all(cv2.getTextSize(t, 0, 0.6, overlay._thickness(0.6))[0][0] <= 180 for t in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")  # nothing lost, nothing added
    assert all(not t.startswith("_") for t in lines)
