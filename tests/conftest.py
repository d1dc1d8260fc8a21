"""Shared test fixtures: hand-built legs with known angles."""

from __future__ import annotations

import math

import numpy as np
import pytest


def build_leg(
    ldfa: float,
    mpta: float,
    side: str = "right",
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    rotation_deg: float = 0.0,
    origin_mm: tuple[float, float] = (150.0, 100.0),
    patient_right_on_image_left: bool = True,
    mhka: float | None = None,
) -> dict[str, tuple[float, float]]:
    """Eight pixel landmarks of a leg whose LDFA/MPTA are exactly ``ldfa``/``mpta`` (degrees).

    Built in mm (x right, y down), then rotated in-plane by ``rotation_deg`` about the hip and
    converted to pixels with ``spacing_mm = (row, col)``. Independent of cpak_cli.geometry.
    The femoral mechanical axis is vertical; the ankle centre lies 380 mm from the knee centre.
    With ``mhka`` (degrees, valgus positive) the tibial axis is turned by exactly that angle
    from the femoral axis' extension, towards lateral for valgus (knee medial of the hip-ankle
    line); without it the ankle centre is 12 mm lateral, i.e. mHKA = +atan(12/380) (valgus).
    """
    lateral = -1.0 if (side == "right") == patient_right_on_image_left else 1.0
    hip = np.array([0.0, 0.0])
    knee = np.array([8.0 * lateral * 0, 450.0])  # straight femoral axis, knee below hip
    # Femoral axis points up (knee -> hip). Joint line direction (medial -> lateral) makes LDFA with it.
    up = (hip - knee) / np.linalg.norm(hip - knee)
    # rotate 'up' towards lateral by ldfa degrees -> direction medial->lateral of condyles
    def rot(v: np.ndarray, deg: float) -> np.ndarray:
        a = math.radians(deg)
        return np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])

    # choose the sign of rotation so the result points laterally
    cand = rot(up, ldfa)
    if np.sign(cand[0]) != lateral:
        cand = rot(up, -ldfa)
    med_to_lat_f = cand
    cond_lat = knee + med_to_lat_f * 38.0 + np.array([0.0, 6.0])
    cond_med = knee - med_to_lat_f * 38.0 + np.array([0.0, 6.0])
    # Tibia: ankle 380 mm below the knee with a slight lateral offset.
    if mhka is None:
        ankle_center = knee + np.array([12.0 * lateral, 380.0])
    else:
        t = math.radians(mhka)
        ankle_center = knee + 380.0 * np.array([lateral * math.sin(t), math.cos(t)])
    down = (ankle_center - knee) / np.linalg.norm(ankle_center - knee)
    cand = rot(down, mpta)
    if np.sign(cand[0]) != -lateral:
        cand = rot(down, -mpta)
    lat_to_med_t = cand  # direction lateral -> medial of plateau
    plat_med = knee + lat_to_med_t * 36.0 + np.array([0.0, 10.0])
    plat_lat = knee - lat_to_med_t * 36.0 + np.array([0.0, 10.0])
    ankle_dir = np.array([lateral, 0.3])
    ankle_lat = ankle_center + ankle_dir * 14.0
    ankle_med = ankle_center - ankle_dir * 14.0
    pts = {
        "femoral_head": hip,
        "femoral_condyle_lateral": cond_lat,
        "femoral_condyle_medial": cond_med,
        "tibial_plateau_lateral": plat_lat,
        "tibial_plateau_medial": plat_med,
        "knee_center": knee,
        "ankle_lateral": ankle_lat,
        "ankle_medial": ankle_med,
    }
    out = {}
    for name, p in pts.items():
        q = rot(p, rotation_deg) + np.asarray(origin_mm)
        out[name] = (float(q[0] / spacing_mm[1]), float(q[1] / spacing_mm[0]))
    return out


@pytest.fixture
def leg_factory():
    return build_leg


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small models; other work shares the 2 cores)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def point_label_folder(root, ids=("a1", "b2", "c3"), spacing_mm=0.9, size=(160, 320)):
    """A folder in the three-point label format (``labels.csv`` + ``images/<id>.png``): each film
    a dark background with two bright "legs" (vertical bars); returns ``(root, rows)`` where rows
    are the label dicts written (pixel coordinates, image left/right legs)."""
    import csv
    from pathlib import Path

    import cv2

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    rows = []
    for k, iid in enumerate(ids):
        img = np.full((h, w), 8, np.uint8)
        for x in (w * 0.3, w * 0.7):
            cv2.rectangle(img, (int(x) - 8, 20), (int(x) + 8, h - 20), 200, -1)
            cv2.circle(img, (int(x), 30), 14, 230, -1)
        cv2.imwrite(str(root / "images" / f"{iid}.png"), img)
        row = {"id": iid, "pixel_spacing_mm": spacing_mm, "width": w, "height": h}
        for side, x in (("imgleft", w * 0.3), ("imgright", w * 0.7)):
            row.update({f"{side}_hip_x": x, f"{side}_hip_y": 16.0 + k, f"{side}_knee_x": x, f"{side}_knee_y": h / 2,
                        f"{side}_ankle_x": x + 2, f"{side}_ankle_y": h - 30.0})
        rows.append(row)
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    return root, rows
