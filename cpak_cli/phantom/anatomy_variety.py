"""Bodies of the phantom's variety options, added to a leg built by :func:`cpak_cli.phantom.anatomy.build_leg`.

Open physes (lucent bands cut as holes into the bones), osteoarthritis (marginal osteophytes,
subchondral sclerosis), the double plateau contour of a flexed knee and paediatric hardware
(eight-plate, hip plate, ankle screw, tibial nail). Object millimetres of the canonical leg frame
(hip centre at the origin, lateral = ``-x``, ``y`` distal); angles in degrees; ``MU_*`` in 1/mm.
None of these moves a landmark.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .primitives import MU_CORTEX, MU_METAL, MU_TRAB, Body, Ellipsoid, _ell, _rot, _shrunk, _tube, _unit

if TYPE_CHECKING:  # pragma: no cover
    from .anatomy import LegParams


def _slab(c: np.ndarray, u: np.ndarray, half_w: float, half_t: float, depth: float, p: float = 4.0) -> Ellipsoid:
    """Thin box-like superellipse slab centred at ``c``, long axis ``u``."""
    return _ell(c, half_w, half_t, depth, u, p)


def _wavy(c: np.ndarray, u: np.ndarray, half_w: float, hump: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Segments (centre, half width, direction) of an undulating physis: a shallow "M" whose
    central part is raised by ``hump`` mm (towards ``-n``; negative = the other way)."""
    if abs(hump) < 0.05:
        return [(c, half_w, u)]
    n = np.array([-u[1], u[0]])
    if n[1] < 0:
        n = -n
    # polyline x: -1, -0.45, 0, 0.45, 1 (of half_w); y: 0, -hump*0.3, -hump, -hump*0.3, 0
    xs = np.array([-1.0, -0.5, 0.0, 0.5, 1.0]) * half_w
    ys = np.array([0.0, -0.25, -1.0, -0.25, 0.0]) * hump
    out = []
    for k in range(4):
        p0 = c + xs[k] * u + ys[k] * n
        p1 = c + xs[k + 1] * u + ys[k + 1] * n
        d = p1 - p0
        ln = float(np.hypot(*d))
        out.append(((p0 + p1) / 2, ln / 2 + 1.0, d / ln))
    return out


def variety_bodies(lp: LegParams, s: float, femur: Body, tibia: Body, fib: Body, v: dict) -> list[Body]:
    """Open physes (lucent bands as holes), osteoarthritis (osteophytes, subchondral
    sclerosis), knee-flexion double plateau contour and paediatric hardware.

    Nothing here moves a landmark: physes sit >= 10 mm from the articular surfaces, osteophytes
    stay proximal to the condylar tangent line / outside the plateau corners, sclerosis lies
    inside the bone outline.  (Joint-space narrowing itself is done through ``joint_space`` and
    ``jlca``, which define the landmarks.)"""
    H, R, e = v["H"], v["R"], v["e"]
    F0, n_f, u_f = v["F0"], v["n_f"], v["u_f"]
    T0, n_t, u_t, w_t = v["T0"], v["n_t"], v["u_t"], v["w_t"]
    A, n_a, u_a, w_a = v["A"], v["n_a"], v["u_a"], v["w_a"]
    fhead, lmall, d_a = v["fhead"], v["lmall"], v["d_a"]
    fcl, fcm, tpl, tpm = v["fcl"], v["fcm"], v["tpl"], v["tpm"]
    lat_a, shaft_r = v["lat_a"], v["shaft_r"]
    out: list[Body] = []
    ph = lp.physes
    if ph:
        w, mu = ph["w"] / 2.0, ph["mu"]
        tl = ph.get("tilt", (0.0, 0.0, 0.0, 0.0))
        # capital femoral physis: across the head-neck junction, perpendicular to the neck
        perp = np.array([-e[1], e[0]])
        femur.holes.append((_slab(H + 0.42 * R * e, _rot(perp, 12.0 + tl[0]), 1.02 * R, w * 1.1, R, 3.0), mu * 1.2))
        # greater-trochanter apophysis (small)
        J = v["J"]
        gt = J + 8 * s * d_a + (9 + 3 * lp.rotation) * s * lat_a
        femur.holes.append((_slab(gt - 12 * s * d_a, _rot(lat_a, -25.0), 13 * s, w * 0.8, 16 * s, 3.0), mu))
        # distal femoral physis: ph["df"] mm proximal of the condylar line
        for c, hw, ang in _wavy(F0 - ph["df"] * n_f, _rot(u_f, tl[1]), 44 * s, ph.get("wave", 0.0) * s):
            femur.holes.append((_slab(c, ang, hw, w, 34 * s), mu))
        # proximal tibial physis: ph["pt"] mm distal of the plateau line (+ fibular head)
        for c, hw, ang in _wavy(T0 + ph["pt"] * n_t, _rot(u_t, tl[2]), 42 * s, -ph.get("wave", 0.0) * s):
            tibia.holes.append((_slab(c, ang, hw, w, 30 * s), mu))
        fib.holes.append((_slab(fhead - 3.0 * s * n_t, u_t, 12 * s, w * 0.8, 12 * s), mu))
        # distal tibial physis and distal fibular physis (about the plafond level)
        tibia.holes.append((_slab(A - ph["dt"] * n_a, _rot(u_a, tl[3]), 27 * s, w, 23 * s), mu))
        fib.holes.append((_slab(lmall - 10 * s * n_a, u_a, 10 * s, w * 0.8, 10 * s), mu))
    oa = lp.oa
    if oa:
        lat = oa["side"] == "lateral"
        for pnt, tp, bw, out_dir, big in ((fcl, tpl, 16.5, u_f, lat), (fcm, tpm, 17.5, -u_f, not lat)):
            size = oa["osteo"] if big else oa["osteo2"]
            if size > 0.5:
                # femoral marginal osteophyte: outward/downward spur above the tangent line
                L, wd = size, max(1.5, 0.45 * size)
                vdir = _unit(out_dir * math.cos(math.radians(25)) + n_f * math.sin(math.radians(25)))
                c = pnt + out_dir * (bw * s * 0.78 + 0.45 * L) - (0.3 * L + wd + 1.5) * n_f
                prim = _ell(c, L / 2 + 1.5, wd / 2 + 0.5, 14 * s, vdir, 2.0)
                femur.outer.append(prim)
                femur.inner.append((_shrunk(prim, 0.8), MU_TRAB * 1.3))
                # tibial marginal osteophyte: lipping beyond the plateau corner
                vdir = _unit(out_dir * math.cos(math.radians(20)) - n_t * math.sin(math.radians(20)))
                c = tp + out_dir * (0.45 * L - 0.5) + (wd * 0.5 + 1.0) * n_t
                prim = _ell(c, L / 2 + 1.0, wd / 2 + 0.5, 14 * s, vdir, 2.0)
                tibia.outer.append(prim)
                tibia.inner.append((_shrunk(prim, 0.8), MU_TRAB * 1.3))
            if big and oa["scler"] > 0:
                # subchondral sclerosis under both surfaces of the narrowed compartment
                sgn = 1.0 if pnt is fcl else -1.0
                out.append(Body("sclerosis", [
                    _ell(pnt - 8.0 * s * n_f, 9.0 * s, 4.5 * s, 20 * s, u_f, 2.0),
                    _ell(T0 + sgn * w_t * 0.24 * u_t + 5.0 * s * n_t, 14.0 * s, 3.5 * s, 20 * s, u_t, 2.2),
                ], oa["scler"], texture=0.0))
    if lp.flexion > 0:
        # flexed knee: anterior and posterior plateau rims project apart (double contour)
        d = 45.0 * s * math.sin(math.radians(max(lp.flexion - 5.0, 0.0)))
        if d > 1.0:
            out.append(Body("plateau_rim", [_slab(T0 + min(d, 11 * s) * n_t, u_t, 33 * s, 0.9, 6 * s, 3.0)],
                            MU_CORTEX * 0.8))
    for hw in lp.hardware:
        if hw == "eight_plate":  # guided-growth plate across the distal femoral physis (medial)
            c = F0 - 18 * s * n_f - (36 * s + 2.0) * u_f
            out.append(Body("eight_plate", [_slab(c, n_f, 11.0, 1.3, 5.0, 6.0)], MU_METAL, metal=True))
            for k in (-1, 1):
                q = c + k * 7.0 * n_f
                out.append(Body("eight_screw", [_tube(q, q + 28.0 * _rot(u_f, -k * 12.0), 2.0, 1.6, 2.0, 1.6)],
                                MU_METAL * 0.6, metal=True))
        elif hw == "hip_plate":  # proximal femoral osteotomy plate with a blade into the neck
            p0 = v["J"] + shaft_r * lat_a + 10 * s * d_a
            p1 = p0 - 110 * s * d_a
            out.append(Body("hip_plate", [_tube(p0, p1, 2.5, 2.5, 7.0, 7.0, 6.0),
                                          _tube(p0, p0 + 0.8 * (H - p0) , 3.0, 2.5, 6.0, 5.0, 6.0)],
                            MU_METAL, metal=True))
            for i in range(4):
                q = p0 - (30 + 22 * i) * s * d_a
                out.append(Body("hip_screw", [_tube(q, q - (2 * shaft_r + 4) * lat_a, 2.2, 2.2, 2.2, 2.2)],
                                MU_METAL * 0.6, metal=True))
        elif hw == "ankle_screw":  # screw across the medial malleolus / distal tibia
            q = A - (w_a / 2 + 5.0 * s) * u_a + 8 * s * n_a
            out.append(Body("ankle_screw", [_tube(q, q + 40 * s * _unit(u_a - 1.2 * n_a), 2.0, 1.8, 2.0, 1.8)],
                            MU_METAL * 0.6, metal=True))
        elif hw == "nail":  # intramedullary tibial nail
            bore = _tube(T0 + 15 * s * n_t, A - 40 * s * n_a, 3.0, 3.0, 3.0, 3.0)
            out.append(Body("nail", [_tube(T0 + 15 * s * n_t, A - 40 * s * n_a, 4.5, 4.5, 4.5, 4.5, 2.0)],
                            MU_METAL * 0.5, holes=[(bore, MU_METAL * 0.5)], metal=True))
    return out

