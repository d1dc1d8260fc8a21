"""``PhantomOptions.variety``: draws that widen the phantom towards real long-leg films.

Only used when ``variety=True``.  Every draw comes from its own stream of
:func:`~cpak_cli.phantom.spec.rng_for` (20: case, 21/22: right/left leg, 23: scene extras,
24: film look), so the base streams (0..5) are consumed exactly as without variety and a
variety case shares e.g. its CPAK target types and stratification with the plain case.

Fractions (per case unless stated):

* paediatric anatomy 40 % (size 0.55-0.9, slimmer shafts, valgus necks, wider cartilage
  space, OPEN PHYSES: capital femoral, greater trochanter, distal femur, proximal tibia and
  fibula, distal tibia and fibula; guided-growth / osteotomy hardware ~10 % of legs);
* adult osteoarthritis 30 % of adult legs without TKA (one compartment narrowed to
  0-1.8 mm, osteophytes at condyle and plateau margins, subchondral sclerosis);
* knee flexion 25 % of legs (4-25 deg: foreshortening, double plateau contour, low patella);
  limb rotation -2..2 (lesser trochanter, fibular overlap, patella position);
* soft tissue girth 0.8-1.9 x size, fat 1-45 mm;
* gonad shield 40 % (triangle, trapezoid, fan, capsule), collimation 35 %;
* film look: 35 % "EOS" (black air, grey soft tissue, bright bone, no scatter, row lines),
  otherwise DR-like chains with random log / power-law response, equalisation, unsharp
  masking, local contrast normalisation (CLAHE-like, 35 %), clipping VOI window and gamma.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .anatomy import LegParams, knee_gaps
from .primitives import MU_TRAB
from .spec import rng_for

PED_FRACTION = 0.40
OA_FRACTION = 0.30
FLEX_FRACTION = 0.25
SHIELD_FRACTION = 0.40
COLLIMATION_FRACTION = 0.35
EOS_FRACTION = 0.35


def case_variety(seed: int, index: int, bits_forced: int | None) -> dict[str, Any]:
    """Case-level draws: paediatric or adult, body size, soft tissue, bits stored."""
    r = rng_for(seed, index, 20)
    ped = bool(r.random() < PED_FRACTION)
    if ped:
        size = float(r.uniform(0.55, 0.9))
        hip_half = float(r.uniform(74.0, 92.0)) * size
    else:
        size = float(np.clip(r.normal(1.0, 0.07), 0.84, 1.18))
        hip_half = float(r.uniform(82.0, 100.0)) * size
    # girth relative to size: thin (EOS children) .. obese, skewed to thin/average
    girth = size * (0.8 + 1.1 * float(r.beta(1.6, 3.2)))
    fat = float(r.uniform(1.0, 12.0) if ped else r.uniform(3.0, 45.0) * (girth / size) ** 1.5 / 1.5)
    bits = int(r.choice([8, 10, 12, 12, 14, 15, 16]))
    if bits_forced is not None:
        bits = int(bits_forced)
    return {"ped": ped, "size": size, "hip_half": hip_half, "girth": girth, "fat": fat, "bits": bits,
            "fov_top": float(r.uniform(40.0, 260.0)), "fov_bottom": float(r.uniform(30.0, 120.0)),
            "fov_ratio": float(r.uniform(0.36, 0.52)), "fov_cx": float(r.uniform(-25.0, 25.0))}


def _solve_oa(lp: LegParams, side: str, g_n: float, g_o: float) -> tuple[float, float]:
    """(joint_space, jlca) that give gap ``g_n`` in the ``side`` compartment and ``g_o`` in the
    other (secant iteration on jlca; gaps are linear in joint_space)."""
    narrow_lat = side == "lateral"

    def solve_js(jlca: float) -> tuple[float, float]:
        lp.jlca, lp.joint_space = jlca, 0.0
        a0 = knee_gaps(lp)
        lp.joint_space = 1.0
        a1 = knee_gaps(lp)
        i = 0 if narrow_lat else 1
        slope = a1[i] - a0[i]
        js = (g_n - a0[i]) / slope
        other = a0[1 - i] + js * (a1[1 - i] - a0[1 - i])
        return js, other - g_o

    x0, x1 = -3.0, 3.0
    f0, f1 = solve_js(x0)[1], solve_js(x1)[1]
    for _ in range(12):
        if abs(f1 - f0) < 1e-12:
            break
        x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
        x2 = float(np.clip(x2, -12.0, 12.0))
        x0, f0 = x1, f1
        x1, f1 = x2, solve_js(x2)[1]
        if abs(f1) < 1e-4:
            break
    js, _ = solve_js(x1)
    lp.joint_space, lp.jlca = float(js), float(x1)
    return float(js), float(x1)


def vary_leg(lp: LegParams, meta: dict, seed: int, index: int, side: str, ped: bool) -> None:
    """Per-leg variety (in place): paediatric shape and physes, OA, flexion, rotation, hardware."""
    r = rng_for(seed, index, 21 if side == "right" else 22)
    s = lp.size
    lp.rotation = float(r.uniform(-2.0, 2.0))
    hw: list[str] = []
    if ped:
        lp.tka = False
        lp.nsa = float(r.uniform(128.0, 150.0))
        lp.anat_mech = float(r.uniform(4.0, 7.0))
        lp.head_r = float(r.uniform(19.5, 24.5)) * s
        lp.shaft_scale = float(r.uniform(0.75, 0.98))
        lp.tibia_len = lp.femur_len * float(r.uniform(0.79, 0.88))
        lp.joint_space = float(r.uniform(4.5, 9.0)) * s
        young = float(r.random())  # 0 = adolescent .. 1 = young child: thicker, darker physes
        lp.physes = {"w": 1.0 + 2.2 * young + float(r.uniform(0.0, 0.6)),
                     "mu": MU_TRAB * float(r.uniform(0.75, 1.25)),
                     "df": float(r.uniform(11.0, 24.0)) * s, "pt": float(r.uniform(10.0, 20.0)) * s,
                     "dt": float(r.uniform(12.0, 21.0)) * s,
                     "tilt": tuple(float(v) for v in r.uniform(-4.0, 4.0, size=4)),
                     "wave": float(r.uniform(0.0, 6.0))}
        u = float(r.random())
        if u < 0.06:
            hw.append("eight_plate")
        elif u < 0.09:
            hw.append("hip_plate")
        if r.random() < 0.03:
            hw.append("ankle_screw")
        meta["physes"] = {k: lp.physes[k] for k in ("w", "df", "pt", "dt", "wave")}
    else:
        oa = (not lp.tka) and bool(r.random() < OA_FRACTION)
        side_oa = "medial" if r.random() < 0.75 else "lateral"
        g_n = float(r.uniform(0.0, 1.8))
        g_o = float(r.uniform(3.5, 7.0)) * s
        osteo = float(r.uniform(2.0, 9.0)) * s
        osteo2 = float(r.uniform(0.0, 4.0)) * s
        scler = float(r.uniform(0.003, 0.009))
        if oa:
            js, jlca = _solve_oa(lp, side_oa, g_n, g_o)
            lp.joint_space, lp.jlca = js, jlca
            lp.oa = {"side": side_oa, "osteo": osteo, "osteo2": osteo2, "scler": scler}
            meta["oa"] = {"side": side_oa, "gap_mm": g_n}
        if r.random() < 0.02:
            hw.append("nail")
        if r.random() < 0.02:
            hw.append("ankle_screw")
        meta["physes"] = None
    if r.random() < FLEX_FRACTION:
        lp.flexion = float(r.uniform(4.0, 25.0))
        f = math.cos(math.radians(lp.flexion / 2.0))
        lp.femur_len *= f
        lp.tibia_len *= f
        meta["flexion_deg"] = lp.flexion
    lp.hardware = tuple(hw)
    if hw:
        meta["hardware"] = list(hw)


def shields_and_collimation(seed: int, index: int, scene: Any, hips: list[np.ndarray], head_r: float,
                            hip_half: float, size: float, xs_bone: tuple[float, float]) -> dict[str, Any]:
    """Gonad shield polygons and collimation borders (film mm), written into ``scene``."""
    r = rng_for(seed, index, 23)
    info: dict[str, Any] = {}
    if r.random() < SHIELD_FRACTION and len(hips) == 2:
        mid = (hips[0] + hips[1]) / 2.0
        hy = float(mid[1])
        half_gap = abs(float(hips[1][0] - hips[0][0])) / 2.0
        kind = str(r.choice(["triangle", "trapezoid", "fan", "capsule"], p=[0.35, 0.2, 0.3, 0.15]))
        ang = math.radians(float(r.uniform(-8.0, 8.0)))
        if kind in ("triangle", "trapezoid"):  # ovarian shield over the lower pelvis, apex down
            top = hy - float(r.uniform(40.0, 120.0)) * size
            bot = hy + float(r.uniform(-10.0, 35.0)) * size
            hw = float(r.uniform(0.55, 1.05)) * half_gap
            bw = 0.0 if kind == "triangle" else float(r.uniform(0.1, 0.35)) * hw
            pts = [(-hw, top - hy), (hw, top - hy), (bw, bot - hy), (-bw, bot - hy)]
        elif kind == "fan":  # testicular shield: fan (circular sector, apex up) below the symphysis
            y_apex = float(r.uniform(0.0, 40.0)) * size
            rad = float(r.uniform(35.0, 70.0)) * size
            al = math.radians(float(r.uniform(30.0, 60.0)))
            th = np.linspace(math.pi / 2 - al, math.pi / 2 + al, 24)
            pts = [(0.0, y_apex)] + [(rad * math.cos(t), y_apex + rad * math.sin(t)) for t in th]
        else:  # small capsule
            cy = float(r.uniform(40.0, 75.0)) * size
            a, b = float(r.uniform(12.0, 22.0)) * size, float(r.uniform(9.0, 15.0)) * size
            th = np.linspace(0, 2 * math.pi, 32, endpoint=False)
            pts = [(a * math.cos(t), cy + b * math.sin(t)) for t in th]
        ca, sa = math.cos(ang), math.sin(ang)
        poly = [(float(mid[0] + ca * x - sa * y), float(hy + sa * x + ca * y)) for x, y in pts]
        # keep the femoral heads free (shrink towards the midline if needed)
        for _ in range(20):
            P = np.array(poly)
            if all(float(np.min(np.hypot(*(P - h).T))) > head_r + 6.0 and
                   not _inside(P, h) for h in hips):
                break
            poly = [(float(mid[0] + 0.9 * (x - mid[0])), float(y)) for x, y in poly]
        else:
            poly = []
        if poly:
            scene.shields.append({"pts": poly, "mu": float(r.uniform(2.5, 6.0))})
            info["shield"] = kind
    if r.random() < COLLIMATION_FRACTION:
        lo, hi = xs_bone
        left = float(r.uniform(0.0, max(0.0, lo - 35.0 * size)))
        right = float(r.uniform(min(scene.width_mm, hi + 35.0 * size), scene.width_mm))
        scene.collimation = {"x0": left, "x1": right, "slope": float(r.uniform(-0.012, 0.012)),
                             "mu": float(r.uniform(2.0, 5.0)), "shutter": bool(r.random() < 0.6)}
        info["collimation"] = True
    return info


def _inside(P: np.ndarray, h: np.ndarray) -> bool:
    import cv2

    return cv2.pointPolygonTest(P.astype(np.float32).reshape(-1, 1, 2), (float(h[0]), float(h[1])), False) >= 0


def look_params(seed: int, index: int, girth: float, ped: bool) -> dict[str, Any]:
    """Film-level processing ("look") of a variety case; replaces the base render params."""
    r = rng_for(seed, index, 24)
    eos = bool(r.random() < EOS_FRACTION)
    soft_gain = float(r.uniform(0.8, 1.1))
    bone_gain = float(r.uniform(0.7, 1.1) if eos else r.uniform(0.8, 1.4))
    k = 0.0 if (eos or r.random() < 0.7) else float(r.uniform(0.1, 0.45))
    S = 0.021 * soft_gain * 120.0 * girth  # typical soft-tissue line integral (thigh)
    Pk = S if k == 0 else (1.0 - math.exp(-k * S)) / k
    B = 0.5 * bone_gain * (math.exp(-k * S) if k else 1.0)
    if eos:
        eq = float(r.uniform(0.5, 0.85))
        q: dict[str, Any] = {"n0": float(r.uniform(2500.0, 9000.0)), "heel": float(r.uniform(-0.05, 0.05)),
             "scatter": float(r.uniform(0.0, 0.04)), "scatter_sigma_mm": 30.0,
             "blur_px": float(r.uniform(0.6, 1.3)), "eq": eq, "eq_sigma_mm": float(r.uniform(14.0, 32.0)),
             "detail": float(r.uniform(0.1, 0.8)), "detail_sigma_mm": float(r.uniform(0.8, 3.0))}
        lvl = (1.0 - eq) * Pk
        # window placing the thigh soft tissue at 42-62 % (measured on real EOS: soft ~38 %,
        # bone ~51 % of 255; the sampled soft point lies below the nominal level)
        lo = lvl * float(r.uniform(-0.1, 0.2))
        hi = lo + (lvl - lo) / float(r.uniform(0.42, 0.62))
        gamma = float(r.uniform(0.8, 1.35))
        lcn = 0.0
        rowband = float(r.uniform(0.002, 0.012))
    else:
        eq = float(r.uniform(0.3, 0.92))
        q = {"n0": float(r.uniform(500.0, 6000.0)), "heel": float(r.uniform(-0.3, 0.3)),
             "scatter": float(r.uniform(0.0, 0.3)), "scatter_sigma_mm": float(r.uniform(20.0, 32.0)),
             "blur_px": float(r.uniform(0.6, 1.8)), "eq": eq, "eq_sigma_mm": float(r.uniform(8.0, 32.0)),
             "detail": float(r.uniform(0.0, 1.6)), "detail_sigma_mm": float(r.uniform(0.6, 3.0))}
        lvl = (1.0 - eq) * Pk
        lo = lvl * float(r.uniform(-0.5, 0.3))
        hi = lo + (lvl - lo) / float(r.uniform(0.22, 0.62))
        gamma = float(math.exp(r.uniform(math.log(0.6), math.log(1.7))))
        lcn = float(r.uniform(0.3, 0.8)) if r.random() < 0.35 else 0.0
        rowband = float(r.uniform(0.002, 0.01)) if r.random() < 0.15 else 0.0
    # keep the thick pelvis readable: the window's top stays above its expected level
    S_pel = 0.021 * soft_gain * 270.0 * girth
    Pk_pel = S_pel if k == 0 else (1.0 - math.exp(-k * S_pel)) / k
    hi = max(hi, (1.0 - q["eq"]) * Pk_pel + 1.0 * B * (math.exp(-k * (S_pel - S)) if k else 1.0))
    q.update({
        "p_lo": lo, "p_hi": hi,
        "look": {"eos": eos, "k": k, "gamma": gamma, "lcn": lcn, "lcn_sigma_mm": float(r.uniform(8.0, 30.0)),
                 "lcn_target": 0.25 * B, "rowband": rowband, "top": float(r.uniform(0.88, 1.0)),
                 "soft_gain": soft_gain, "bone_gain": bone_gain,
                 "texture_gain": float(r.uniform(0.8, 1.8))},
    })
    return q
