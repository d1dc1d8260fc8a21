"""Phantom-vs-real intensity statistics (used for docs/phantom-vs-real.md).

    python -m cpak_cli.phantom.realism /work/shared/data/real-eos [--cases 60] [--montage docs/img/x.png]

Both kinds of film are reduced to 8-bit display values (real: the PNG as is; phantom: stored
value / max, MONOCHROME2 sense, rendered at 0.8-1.0 mm) and sampled with the SAME rules, from
the hip / knee / ankle points only (no segmentation of the real films):

* bone: brightest 5x5 mm box within 35 mm of the points halfway hip -> knee and knee -> ankle
  (femoral and tibial mid-shafts; the shafts lie off the mechanical axis line);
* soft tissue: 5x5 mm means 24 mm (adults in the phantom: 30 mm) lateral and medial of the
  femoral shaft point, the darker of the two sides that is still brighter than the background;
* background: 10th percentile of the 6 mm strip along the left/right film border at knee level;
* crops: 120 mm square around hip (head centre), knee and ankle: 5th/50th/95th percentiles.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def _box(img: np.ndarray, x: float, y: float, half_px: int) -> float:
    h, w = img.shape
    x0, x1 = max(0, int(x) - half_px), min(w, int(x) + half_px + 1)
    y0, y1 = max(0, int(y) - half_px), min(h, int(y) + half_px + 1)
    if x0 >= x1 or y0 >= y1:
        return float("nan")
    return float(img[y0:y1, x0:x1].mean())


def film_stats(img: np.ndarray, sp: float, hip: tuple, knee: tuple, ankle: tuple, lateral_sign: float,
               soft_mm: float = 30.0) -> dict[str, float]:
    """Intensity statistics of one leg of an 8-bit film (see module doc)."""
    hb = max(1, int(2.5 / sp))
    import cv2

    sm = cv2.blur(img, (2 * hb + 1, 2 * hb + 1))

    def shaft(p: tuple) -> tuple[float, float]:
        """Brightest 5x5 mm box within +-35 mm of ``p`` along the row (the shaft lies off the
        mechanical axis line)."""
        y = int(np.clip(p[1], 0, img.shape[0] - 1))
        x0, x1 = max(0, int(p[0] - 35 / sp)), min(img.shape[1], int(p[0] + 35 / sp) + 1)
        k = int(np.argmax(sm[y, x0:x1]))
        return float(x0 + k), float(sm[y, x0 + k])

    fm = ((hip[0] + knee[0]) / 2, (hip[1] + knee[1]) / 2)
    tm = ((knee[0] + ankle[0]) / 2, (knee[1] + ankle[1]) / 2)
    fx, fb = shaft(fm)
    _, tb = shaft(tm)
    bone = (fb + tb) / 2
    fm = (fx, fm[1])
    strip = max(2, int(6.0 / sp))
    ky = int(knee[1])
    rows = slice(max(0, ky - int(30 / sp)), ky + int(30 / sp))
    bg = float(np.percentile(np.concatenate([img[rows, :strip].ravel(), img[rows, -strip:].ravel()]), 10))
    cand = [_box(img, fm[0] + sgn * soft_mm / sp, fm[1], hb) for sgn in (lateral_sign, -lateral_sign)]
    cand = [c for c in cand if c == c and c > bg + 3]
    soft = min(cand) if cand else float("nan")
    out = {"bone": float(bone), "soft": soft, "background": bg, "contrast_bone_soft": float(bone - soft),
           "contrast_soft_bg": float(soft - bg)}
    for name, (x, y) in (("hip", hip), ("knee", knee), ("ankle", ankle)):
        h = int(60 / sp)
        crop = img[max(0, int(y) - h):int(y) + h, max(0, int(x) - h):int(x) + h]
        if crop.size:
            p = np.percentile(crop, [5, 50, 95])
            out.update({f"{name}_p5": float(p[0]), f"{name}_p50": float(p[1]), f"{name}_p95": float(p[2])})
    return out


def real_stats(root: Path) -> list[dict[str, float]]:
    import cv2

    out = []
    with open(root / "labels.csv") as f:
        for r in csv.DictReader(f):
            img = cv2.imread(str(root / "images" / f"{r['id']}.png"), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            img = img.astype(np.float32)
            sp = float(r["pixel_spacing_mm"])
            for pre, lat in (("imgleft_", -1.0), ("imgright_", 1.0)):
                hip = (float(r[pre + "hip_x"]), float(r[pre + "hip_y"]) + 20.0 / sp)  # head top -> ~centre
                knee = (float(r[pre + "knee_x"]), float(r[pre + "knee_y"]))
                ankle = (float(r[pre + "ankle_x"]), float(r[pre + "ankle_y"]))
                out.append(film_stats(img, sp, hip, knee, ankle, lat, 24.0))
    return out


def phantom_stats(n: int, seed: int = 101) -> list[dict[str, float]]:
    from .generate import make_case, render

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        sp = float(rng.uniform(0.8, 1.0))
        c = make_case(seed, i, variety=True, spacing_mm=(sp, sp))
        img = render(c).astype(np.float32) * (255.0 / ((1 << c.bits_stored) - 1))
        ped = c.params["variety"]["pediatric"]
        for side, lm in c.landmarks.items():
            if not all(k in lm for k in ("femoral_head", "knee_center", "ankle_lateral", "ankle_medial")):
                continue
            ank = ((lm["ankle_lateral"][0] + lm["ankle_medial"][0]) / 2, (lm["ankle_lateral"][1] + lm["ankle_medial"][1]) / 2)
            lat = -1.0 if lm["femoral_condyle_lateral"][0] < lm["femoral_condyle_medial"][0] else 1.0
            s = film_stats(img, sp, lm["femoral_head"], lm["knee_center"], ank, lat, 24.0 if ped else 30.0)
            s["pediatric"] = float(ped)
            s["eos"] = float(c.params["variety"]["look"] == "eos")
            out.append(s)
    return out


def summarise(rows: list[dict[str, float]], keys: list[str]) -> dict[str, tuple[float, float, float]]:
    out = {}
    for k in keys:
        q25, q50, q75 = (float(v) for v in np.nanpercentile([r.get(k, np.nan) for r in rows], [25, 50, 75]))
        out[k] = (q25, q50, q75)
    return out


KEYS = ["background", "soft", "bone", "contrast_soft_bg", "contrast_bone_soft",
        "hip_p5", "hip_p50", "hip_p95", "knee_p5", "knee_p50", "knee_p95", "ankle_p5", "ankle_p50", "ankle_p95"]


def comparison_table(real_dir: Path, cases: int) -> str:
    """Quartiles of each quantity on the real films, all phantom cases and the EOS-look ones, as text."""
    real = summarise(real_stats(real_dir), KEYS)
    ph_rows = phantom_stats(cases)
    ph = summarise(ph_rows, KEYS)
    eos = summarise([r for r in ph_rows if r["eos"]], KEYS)

    def f(t: tuple[float, ...]) -> str:
        return "/".join(f"{v:.0f}" for v in t)

    lines = [f"{'quantity (8-bit)':22s} {'real EOS q25/med/q75':>24s} {'phantom variety':>24s} {'phantom EOS look':>24s}"]
    lines += [f"{k:22s} {f(real[k]):>24s} {f(ph[k]):>24s} {f(eos[k]):>24s}" for k in KEYS]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("real", type=Path)
    ap.add_argument("--cases", type=int, default=60)
    a = ap.parse_args()
    # the command-line entry point (python -m cpak_cli.phantom.realism) reports on the terminal
    print(comparison_table(a.real, a.cases))  # noqa: T201


if __name__ == "__main__":
    main()
