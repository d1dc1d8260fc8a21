"""The printed table (cpak_cli.outputs.report): numbers that add up, a type decided on full precision,
and a borderline flag when the 0.1-degree display would read as the other class."""

from __future__ import annotations

import re

import pytest

from cpak_cli.core.cpak import display_angles, display_conflicts
from cpak_cli.core.measurement import measure_leg
from cpak_cli.outputs.report import print_legs
from tests.factories import build_leg, build_panel_leg

SP = (0.15, 0.15)


def _tables(capsys, legs) -> tuple[list[dict[str, list[str]]], list[str]]:
    """The printed tables (rows by leg, cells stripped) and the lines after the last table."""
    print_legs(legs, title="t")
    out = capsys.readouterr().out
    tables: list[dict[str, list[str]]] = []
    after: list[str] = []
    for line in out.splitlines():
        if line.startswith("┏"):
            tables.append({})
            after = []
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] in ("right", "left"):
            tables[-1][cells[0]] = cells
        elif tables and not line.startswith(("┏", "┃", "┡", "└")):
            after.append(line)
    return tables, after


def _rows(capsys, legs) -> dict[str, list[str]]:
    return _tables(capsys, legs)[0][0]


def test_display_angles_add_up():
    assert display_angles(88.04, 86.0) == (88.0, 86.0, -2.0, 174.0)
    assert display_angles(87.44793, 86.75047) == (87.4, 86.8, -0.6, 174.2)  # rounded separately: -0.7
    assert display_angles(88.48, 88.48) == (88.5, 88.5, 0.0, 177.0)
    assert display_conflicts(88.3, 86.0) == []


@pytest.mark.parametrize("ldfa,mpta,cells,cpak", [
    (88.04, 86.00, ("88.0", "86.0", "-2.0", "174.0"), "I"),    # aHKA -2.04 is varus
    (88.48, 88.48, ("88.5", "88.5", "0.0", "177.0"), "II"),    # JLO 176.96 is apex distal
    (87.44793, 86.75047, ("87.4", "86.8", "-0.6", "174.2"), "II"),
])
def test_table_prints_ahka_and_jlo_from_the_rounded_angles(capsys, ldfa, mpta, cells, cpak):
    leg = measure_leg("right", build_leg(ldfa, mpta), SP)
    row = _rows(capsys, {"right": leg})["right"]
    assert tuple(row[1:5]) == cells and row[6] == cpak
    ldfa_s, mpta_s, ahka_s, jlo_s = (float(c) for c in row[1:5])
    assert ahka_s == pytest.approx(mpta_s - ldfa_s, abs=1e-9) and jlo_s == pytest.approx(mpta_s + ldfa_s, abs=1e-9)
    if cells[2] == "-2.0" or cells[3] == "177.0":  # the display reads neutral: borderline says so
        assert "borderline" in row[7]
        assert any("prints as" in n for n in leg.notes)
    else:
        assert row[7] == ""


def test_unmeasured_and_untyped_legs(capsys):
    partial = measure_leg("right", {**build_leg(87.0, 84.0), "ankle_lateral": None}, SP)
    swapped = build_leg(87.0, 84.0, side="left")
    swapped["ankle_lateral"], swapped["ankle_medial"] = swapped["ankle_medial"], swapped["ankle_lateral"]
    untyped = measure_leg("left", swapped, SP)
    rows = _rows(capsys, {"right": partial, "left": untyped})
    assert rows["right"][1] == "87.0" and rows["right"][3] == "-" and rows["right"][6] == "-"
    assert rows["right"][7].startswith("not measured: missing landmark(s): ankle_lateral")
    assert rows["left"][1:5] == ["87.0", "84.0", "-3.0", "171.0"] and rows["left"][6] == "-"
    assert "implausible_geometry" in rows["left"][7]
    rows = _rows(capsys, {"left": untyped})
    assert rows["right"][7] == "not in the image"


# ------------------------------------------------------------------ the alignment panel table


def test_panel_table_values_outside_normal_and_leg_length_difference(capsys):
    right = measure_leg("right", build_panel_leg(5.0, -6.0, ldfa=88.0, femur_mm=452.0, tibia_mm=371.0), SP)
    left = measure_leg("left", build_panel_leg(1.0, -1.0, side="left", femur_mm=440.5, tibia_mm=374.0), SP)
    (main, panel), after = _tables(capsys, {"right": right, "left": left})
    assert main["right"][6] == "II" and main["right"][7] == ""  # outside normal is no flag
    header = ["JLCA", "MAD mm", "Femur mm", "Tibia mm", "Leg mm"]
    for side, leg in (("right", right), ("left", left)):
        row = panel[side]
        want = [leg.jlca, leg.mad_mm, leg.femur_mm, leg.tibia_mm, leg.leg_mm]
        assert [float(c) for c in row[1:6]] == pytest.approx([round(v, 1) for v in want], abs=1e-9), header
    assert panel["right"][1:6] == ["5.0", f"{right.mad_mm:.1f}", "452.0", "371.0", "823.0"]
    assert panel["right"][6] == f"mHKA -6.0 < -3, JLCA 5.0 > 2, MAD {right.mad_mm:.1f} mm > 15"
    assert panel["left"][6] == ""
    assert any(ln.startswith("normal: LDFA 85 to 90, MPTA 85 to 90, mHKA -3 to 3, JLCA 0 to 2 degrees; MAD 0 to 15 mm")
               for ln in after)
    assert any("JLCA > 0 joint lines converging medially" in ln and "MAD > 0 mechanical axis medial" in ln
               for ln in after)
    assert "leg-length difference (right - left): +8.5 mm" in after


def test_panel_value_just_outside_prints_outside(capsys):
    # JLCA 2.04 would read 2.0 (inside 0-2) at one decimal: the outside cell shows 2.04
    leg = measure_leg("right", build_panel_leg(2.04, 0.0), SP)
    (_, panel), _ = _tables(capsys, {"right": leg})
    assert panel["right"][1] == "2.0" and panel["right"][6] == "JLCA 2.04 > 2"


def test_panel_table_for_partial_and_missing_legs(capsys):
    partial = measure_leg("right", {**build_panel_leg(1.0, -2.0), "ankle_lateral": None}, SP)
    (main, panel), after = _tables(capsys, {"right": partial})
    assert main["right"][7].startswith("not measured")
    assert panel["right"][1:6] == ["1.0", "-", "450.0", "-", "-"]
    assert panel["left"][1:] == ["-", "-", "-", "-", "-", "not in the image"]
    assert not any("leg-length difference" in ln for ln in after)


def test_leg_length_difference_line_says_when_the_sides_are_in_doubt(capsys):
    right = measure_leg("right", build_panel_leg(1.0, 0.0, femur_mm=452.0), SP)
    left = measure_leg("left", build_panel_leg(1.0, 0.0, side="left"), SP)
    left.flags.append("orientation_assumed")
    _, after = _tables(capsys, {"right": right, "left": left})
    assert ("leg-length difference (right - left): +2.0 mm (which leg is the right one is in doubt: "
            "orientation_assumed)") in after
