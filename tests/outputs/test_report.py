"""The printed table (cpak_cli.outputs.report): numbers that add up, a type decided on full precision,
and a borderline flag when the 0.1-degree display would read as the other class."""

from __future__ import annotations

import re

import pytest

from cpak_cli.core.cpak import display_angles, display_conflicts
from cpak_cli.core.measurement import measure_leg
from cpak_cli.outputs.report import print_legs
from tests.factories import build_leg

SP = (0.15, 0.15)


def _rows(capsys, legs) -> dict[str, list[str]]:
    print_legs(legs, title="t")
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0] in ("right", "left"):
            rows[cells[0]] = cells
    return rows


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
