"""Construction of the lower-limb phantom: leg parameters, bones, implants and soft-tissue envelope.

Everything here works in *object millimetres* of the coronal (AP) projection plane:
``x`` to the image right, ``y`` down (towards the feet), origin at the centre of the
top-left pixel of the film.  Rays are parallel to ``z`` (orthographic AP projection), so a
primitive's contribution to a pixel is its chord length along ``z`` at that pixel's
``(x, y)``.  All primitives are symmetric about the ``z = 0`` plane and have their in-plane
axes in the coronal plane, which is what makes the projected geometry (and therefore the
landmarks) exact by construction.

A leg is first built in a canonical frame (a *right* leg, lateral = ``-x``, hip centre at the
origin) and then moved into the film with a rigid/mirror transform (:class:`Placement`),
which preserves the unsigned angles LDFA / MPTA exactly.

The primitives and attenuation coefficients are in :mod:`cpak_cli.phantom.primitives`; the
bodies of the variety options (open physes, osteoarthritis, flexion, paediatric hardware) in
:mod:`cpak_cli.phantom.anatomy_variety`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .anatomy_variety import variety_bodies
from .primitives import MU_MARROW, MU_METAL, MU_TRAB, Body, Ellipsoid, Prim, _bone, _ell, _rot, _tube, corner_superellipse


# --------------------------------------------------------------------------------------
# Leg construction
@dataclass
class LegParams:
    """Parameters of one leg (canonical right-leg frame, mm / degrees)."""

    ldfa: float
    mpta: float
    femur_len: float  # hip centre -> knee centre (mechanical)
    tibia_len: float  # knee centre -> ankle centre (mechanical)
    theta_f: float  # inclination of the femoral mechanical axis from vertical (medial +)
    anat_mech: float  # femoral anatomical-mechanical angle
    nsa: float  # neck-shaft angle
    head_r: float
    jlca: float  # femoral vs tibial joint-line convergence (deg)
    ankle_tilt: float  # talar dome line vs perpendicular to the tibial axis (deg)
    size: float  # bone size factor (1 = average adult)
    joint_space: float  # knee joint space, mm
    rotation: float  # limb rotation (-1 internal .. +1 external), cosmetic
    tka: bool = False
    plate: bool = False
    seed: int = 0
    # --- variety (all default to "off": the construction is then unchanged, bit for bit)
    shaft_scale: float = 1.0  # shaft radius factor (children: slimmer shafts)
    physes: dict | None = None  # open growth plates: {"w", "mu", "df", "pt", "dt", "tilt"} (mm, 1/mm)
    oa: dict | None = None  # osteoarthritis: {"side", "osteo", "osteo2", "scler"}
    flexion: float = 0.0  # knee flexion, deg (foreshortening already in the lengths)
    hardware: tuple = ()  # extra implants: "eight_plate", "hip_plate", "ankle_screw", "nail"


@dataclass
class Leg:
    """A constructed leg: landmarks (mm, canonical frame) and bodies."""

    landmarks: dict[str, np.ndarray]
    bodies: list[Body]
    soft: list[tuple[Prim, Prim]]  # (skin envelope, muscle core) primitives
    extra: dict[str, Any] = field(default_factory=dict)

def knee_frame(lp: LegParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The knee's frame in the canonical leg frame (hip centre at the origin, lateral = -x, y
    distal): femoral axis direction ``d_f``, knee centre ``K``, femoral joint line ``u_f``
    (pointing laterally) with its distal normal ``n_f``, tibial joint line ``u_t`` (``u_f``
    turned by the JLCA) with its distal normal ``n_t``. Lengths in mm."""
    d_f = np.array([math.sin(math.radians(lp.theta_f)), math.cos(math.radians(lp.theta_f))])
    K = lp.femur_len * d_f
    up = -d_f
    cand = [_rot(up, lp.ldfa), _rot(up, -lp.ldfa)]
    u_f = cand[0] if cand[0][0] < cand[1][0] else cand[1]
    n_f = np.array([-u_f[1], u_f[0]])
    if n_f[1] < 0:
        n_f = -n_f
    u_t = _rot(u_f, lp.jlca)
    n_t = np.array([-u_t[1], u_t[0]])
    if n_t[1] < 0:
        n_t = -n_t
    return d_f, K, u_f, n_f, u_t, n_t


def build_leg(lp: LegParams) -> Leg:
    """Construct a right leg in its canonical frame (hip centre at origin, lateral = -x,
    y distal).  Landmarks are exact by construction:

    * femoral_head = sphere centre ``H``; knee_center ``K = H + Lf*d_f``;
    * condyle tangent points on a line of direction ``u_f`` with angle(H-K, u_f) = LDFA,
      each the distal extreme of its condyle (condyle centre = point - b*n_f);
    * plateau margins on a line ``u_t`` with angle(A-K, -u_t) = MPTA, exactly on the rim of
      the tibial plateau block;
    * talar dome edges on the rim of the talus, midpoint = ankle centre ``A``.
    """
    s = lp.size
    H = np.zeros(2)
    d_f, K, u_f, n_f, u_t, n_t = knee_frame(lp)
    K = H + K
    up = -d_f
    cand = [_rot(-u_t, lp.mpta), _rot(-u_t, -lp.mpta)]
    d_t = cand[0] if cand[0][1] > cand[1][1] else cand[1]
    A = K + lp.tibia_len * d_t

    # ------------------------------------------------------------------ knee
    spine_h = 9.0 * s  # spine tips above the plateau line: K is at the spine-tip level
    T0 = K + spine_h * n_t  # plateau-line centre
    F0 = K + (spine_h - lp.joint_space) * n_f + 1.0 * s * u_f  # condylar line centre
    sep_f = 48.0 * s  # distance between the two condylar tangent points
    fcl = F0 + sep_f / 2 * u_f
    fcm = F0 - sep_f / 2 * u_f
    w_t = 76.0 * s
    tpl = T0 + w_t / 2 * u_t
    tpm = T0 - w_t / 2 * u_t

    # ------------------------------------------------------------------ ankle
    perp = np.array([d_t[1], -d_t[0]])
    if perp[0] > 0:
        perp = -perp
    u_a = _rot(perp, lp.ankle_tilt)
    n_a = np.array([-u_a[1], u_a[0]])
    if n_a[1] < 0:
        n_a = -n_a
    w_a = 30.0 * s
    al = A + w_a / 2 * u_a
    am = A - w_a / 2 * u_a
    landmarks = {
        "femoral_head": H.copy(),
        "femoral_condyle_lateral": fcl, "femoral_condyle_medial": fcm,
        "tibial_plateau_lateral": tpl, "tibial_plateau_medial": tpm,
        "knee_center": K.copy(),
        "ankle_lateral": al, "ankle_medial": am,
    }

    bodies: list[Body] = []
    rot = lp.rotation
    # ------------------------------------------------------------------ femur
    # anatomical axis through K, anat_mech degrees lateral of the mechanical axis
    d_a = _rot(up, lp.anat_mech if _rot(up, lp.anat_mech)[0] < _rot(up, -lp.anat_mech)[0]
               else -lp.anat_mech)  # pointing up & lateral
    lat_a = np.array([d_a[1], -d_a[0]])  # perpendicular, lateral side
    if lat_a[0] > 0:
        lat_a = -lat_a
    # neck: from head towards the shaft at (180 - nsa) to the upward shaft direction
    to_head = _rot(d_a, (180 - lp.nsa) if _rot(d_a, 180 - lp.nsa)[0] > 0 else -(180 - lp.nsa))
    e = -to_head  # head -> shaft
    # intersection of H + s e with K + t d_a
    M = np.array([[e[0], -d_a[0]], [e[1], -d_a[1]]])
    s_n, t_n = np.linalg.solve(M, K - H)
    J = H + s_n * e  # neck/shaft junction on the anatomical axis
    R = lp.head_r
    shaft_r = 13.5 * s * lp.shaft_scale
    fem_outer: list[Prim] = [
        Ellipsoid(float(H[0]), float(H[1]), R, R, R),  # head
        _tube(H + 0.35 * R * e, J + 6 * s * e, 0.66 * R, 0.78 * R, 0.62 * R, 0.7 * R),  # neck
        _tube(J + 12 * s * d_a, J - 90 * s * d_a, 24 * s, shaft_r + 1.5 * s, 22 * s, shaft_r + 1 * s),
        _ell(J + 8 * s * d_a + (9 + 3 * rot) * s * lat_a, 17 * s, 30 * s, 20 * s, d_a[::-1] * [1, -1], 2.4),
        _tube(J - 30 * s * d_a, F0 - 120 * s * n_f, shaft_r, shaft_r, shaft_r, shaft_r),
        _tube(F0 - 135 * s * n_f, F0 - 45 * s * n_f, shaft_r + 0.3 * s, 35 * s, shaft_r, 27 * s),
        _ell(F0 - 24 * s * n_f, 40 * s, 17 * s, 30 * s, u_f, 2.5),
    ]
    # lesser trochanter (posteromedial; more visible with external rotation)
    lt_c = J - (38 * s) * d_a - (shaft_r + (2 + 3 * rot) * s) * lat_a
    fem_outer.append(_ell(lt_c, 7 * s, 11 * s, 7 * s, d_a, 2.0))
    fem_cort = [1.6 * s, 2.5 * s, 3.0 * s, 2.0 * s, 5.5 * s, 2.2 * s, 1.6 * s, 1.5 * s]
    fem_in = [MU_TRAB, MU_TRAB, MU_TRAB * 0.8, MU_TRAB, MU_MARROW, MU_TRAB * 0.7, MU_TRAB, MU_TRAB]
    # condyles: distal extreme along n_f exactly at the tangent points
    for pnt, bw, extra in ((fcl, 16.5, 1.0), (fcm, 17.5, -1.0)):
        b = 24.0 * s
        cc = pnt - b * n_f
        fem_outer.append(_ell(cc, bw * s, b, 30 * s, u_f, 2.3))
        fem_cort.append(1.5 * s)
        fem_in.append(MU_TRAB)
    femur = _bone("femur", fem_outer, fem_cort, fem_in)
    # intercondylar notch: lucent arch between the condyles (partial depth)
    notch_c = F0 + 0.5 * s * u_f
    femur.holes.append((_ell(notch_c, 9.5 * s, 20 * s, 14 * s, u_f, 2.4), MU_TRAB + 0.006))
    bodies.append(femur)

    # ------------------------------------------------------------------ patella
    pat_c = F0 - 46 * s * n_f + (2.0 + 4.0 * rot) * s * u_f
    if lp.flexion > 0:  # flexed knee: the patella rides lower over the notch
        pat_c = pat_c + min(lp.flexion, 30.0) * 0.6 * s * n_f
    bodies.append(_bone("patella", [_ell(pat_c, 21 * s, 24 * s, 9 * s, u_f, 2.2)], [1.2 * s],
                        [MU_TRAB * 0.8]))

    # ------------------------------------------------------------------ tibia
    plateau = corner_superellipse(tpm, tpl, n_t, 12 * s, 4.0, 0.94, 27 * s)
    tib_outer: list[Prim] = [plateau]
    # tibial spines (tips at the knee-centre level)
    for sgn in (1.0, -1.0):
        tip = K + sgn * 5.5 * s * u_t
        tib_outer.append(_ell(tip + 11.0 * s * n_t, 6.5 * s, 11.0 * s, 8 * s, u_t, 2.0))
    shaft_top = K + 130 * s * d_t
    ankle_meta = A - 45 * s * n_a
    tib_outer += [
        _ell(T0 + 22 * s * n_t, 36 * s, 20 * s, 26 * s, u_t, 2.6),
        _tube(T0 + 36 * s * n_t, T0 + 75 * s * n_t, 30 * s, 21 * s, 23 * s, 18 * s),
        _tube(T0 + 65 * s * n_t, shaft_top, 22 * s, 14 * s, 19 * s, 13 * s),
        _tube(shaft_top - 10 * s * d_t, ankle_meta - 40 * s * d_t, 14 * s, 12 * s, 13 * s, 12 * s),
        _tube(ankle_meta - 90 * s * d_t, A - 30 * s * n_a, 12 * s, 21 * s, 12 * s, 19 * s),
        # distal tibia / plafond: bottom ~3 mm above the talar dome line
        _ell(A - (3.2 + 11) * s * n_a - 1.5 * s * u_a, 24 * s, 11 * s, 21 * s, u_a, 4.0),
        # medial malleolus
        _ell(A - (w_a / 2 + 5.5 * s) * u_a + 1.5 * s * n_a, 6.0 * s, 15 * s, 11 * s, u_a, 2.2),
    ]
    tib_cort = [1.6 * s, 1.2 * s, 1.2 * s, 1.8 * s, 2.2 * s, 2.8 * s, 4.5 * s, 2.0 * s, 1.5 * s, 1.5 * s]
    tib_in = [MU_TRAB, MU_TRAB, MU_TRAB, MU_TRAB * 0.9, MU_TRAB * 0.8, MU_TRAB * 0.6, MU_MARROW, MU_TRAB * 0.7, MU_TRAB, MU_TRAB]
    tibia = _bone("tibia", tib_outer, tib_cort, tib_in)
    bodies.append(tibia)

    # ------------------------------------------------------------------ fibula
    fib_shift = (1.0 - 0.5 * rot)  # external rotation -> more overlap with the tibia
    fhead = T0 + (w_t / 2 - 4 * s * fib_shift) * u_t + 22 * s * n_t
    lmall = A + (w_a / 2 + 6.5 * s) * u_a + 9 * s * n_a
    fib = _bone("fibula", [
        _ell(fhead, 11 * s, 13 * s, 11 * s, u_t, 2.2),
        _tube(fhead + 4 * s * d_t, fhead + 45 * s * d_t, 9.5 * s, 7 * s, 9 * s, 7 * s),
        _tube(fhead + 30 * s * d_t, lmall - 30 * s * d_t, 7 * s, 6.5 * s, 7 * s, 6 * s),
        _tube(lmall - 40 * s * d_t, lmall, 6.5 * s, 9 * s, 6 * s, 9 * s),
        _ell(lmall + 6 * s * n_a, 8.5 * s, 17 * s, 10 * s, u_a, 2.2),
    ], [1.5 * s, 1.8 * s, 2.2 * s, 2.0 * s, 1.5 * s], [MU_TRAB, MU_TRAB, MU_MARROW + 0.002, MU_TRAB * 0.8, MU_TRAB])
    bodies.append(fib)

    # ------------------------------------------------------------------ talus + hindfoot
    talus = corner_superellipse(am, al, n_a, 13 * s, 3.2, 0.86, 22 * s)
    bodies.append(_bone("talus", [talus, _ell(A + 24 * s * n_a + 6 * s * u_a, 20 * s, 14 * s, 20 * s, u_a)],
                        [1.4 * s, 1.4 * s], [MU_TRAB, MU_TRAB]))
    bodies.append(_bone("calcaneus", [_ell(A + 48 * s * n_a + 4 * s * u_a, 24 * s, 18 * s, 30 * s, u_a, 2.4)],
                        [1.6 * s], [MU_TRAB * 0.9]))

    if lp.physes or lp.oa or lp.flexion > 0 or lp.hardware:
        bodies += variety_bodies(lp, s, femur, tibia, fib, locals())

    # ------------------------------------------------------------------ implants
    if lp.tka:
        # femoral component: metal shell on the condyles, distal surfaces at the tangent points
        comp_outer: list[Prim] = []
        comp_holes: list[tuple[Prim, float]] = []
        for pnt in (fcl, fcm):
            b = 22.0 * s
            cc = pnt - b * n_f
            comp_outer.append(_ell(cc, 16.5 * s, b, 30 * s, u_f, 2.3))
            comp_holes.append((_ell(cc - 1.0 * s * n_f, 13.5 * s, b - 4.5 * s, 24 * s, u_f, 2.3), 10.0))
        comp_outer.append(_ell(F0 - 30 * s * n_f, 34 * s, 14 * s, 30 * s, u_f, 3.0))
        comp_holes.append((_ell(F0 - 30 * s * n_f, 31 * s, 12 * s, 28.5 * s, u_f, 3.0), 10.0))
        bodies.append(Body("tka_femoral", comp_outer, MU_METAL * 0.15, holes=comp_holes, metal=True))
        # tibial tray: top surface ~ on the plateau line (corner points on its rim)
        tray = corner_superellipse(tpm, tpl, n_t, 2.5 * s, 8.0, 0.97, 26 * s)
        keel = _tube(T0 + 2 * s * n_t, T0 + 55 * s * n_t, 9 * s, 6 * s, 9 * s, 6 * s)
        bodies.append(Body("tka_tibial", [tray, keel], MU_METAL * 0.25, metal=True))
    if lp.plate:
        # lateral femoral plate with transverse screws
        p0 = K - 90 * s * d_a + (shaft_r + 2.5 * s) * lat_a
        p1 = K - 250 * s * d_a + (shaft_r + 2.5 * s) * lat_a
        bodies.append(Body("plate", [_tube(p0, p1, 2.3 * s, 2.3 * s, 8 * s, 8 * s, 6.0)], MU_METAL,
                           metal=True))
        for i in range(6):
            q = p0 + (p1 - p0) * (0.07 + 0.172 * i)
            bodies.append(Body(f"screw{i}", [_tube(q + 1 * s * lat_a, q - (2 * shaft_r + 6 * s) * lat_a,
                                                    2.2 * s, 2.2 * s, 2.2 * s, 2.2 * s)],
                               MU_METAL * 0.6, metal=True))

    # ------------------------------------------------------------------ soft tissue
    soft: list[tuple[Prim, Prim]] = []
    knee_mid = (F0 + T0) / 2
    thigh_top = H + 35 * s * d_f + 20 * s * np.array([1.0, 0.0])
    return Leg(landmarks, bodies, soft, extra={
        "K": K, "A": A, "H": H, "d_f": d_f, "d_t": d_t, "knee_mid": knee_mid, "thigh_top": thigh_top,
        "u_f": u_f, "n_f": n_f, "J": J})


def knee_gaps(lp: LegParams) -> tuple[float, float]:
    """(lateral, medial) joint-space width in mm: distance from each condylar tangent point to
    the tibial plateau line, along the plateau normal (same construction as :func:`build_leg`)."""
    s = lp.size
    d_f, K, u_f, n_f, u_t, n_t = knee_frame(lp)
    spine_h = 9.0 * s
    T0 = K + spine_h * n_t
    F0 = K + (spine_h - lp.joint_space) * n_f + 1.0 * s * u_f
    fcl = F0 + 24.0 * s * u_f
    fcm = F0 - 24.0 * s * u_f
    return float((T0 - fcl) @ n_t), float((T0 - fcm) @ n_t)

def soft_tissue(leg: Leg, girth: float, fat: float) -> list[tuple[Prim, float]]:
    """Skin-envelope primitives of one leg (canonical frame): list of (primitive, fat_mm)."""
    ex = leg.extra
    H, K, A = ex["H"], ex["K"], ex["A"]
    g = girth
    med = np.array([1.0, 0.0])
    thigh_top = H + 10 * med + np.array([0.0, -20.0])
    prims: list[tuple[Prim, float]] = [
        (_tube(thigh_top, K + np.array([4.0, -40.0]), 95 * g, 58 * g, 90 * g, 58 * g), fat),
        (Ellipsoid(float(K[0] + 4), float(K[1]), 56 * g, 70 * g, 55 * g), fat),
        (_tube(K + np.array([2.0, 40.0]), K + 0.35 * (A - K), 54 * g, 58 * g, 55 * g, 58 * g), fat),
        (_tube(K + 0.35 * (A - K), A + np.array([1.0, -30.0]), 58 * g, 34 * g, 58 * g, 36 * g), fat * 0.6),
        (Ellipsoid(float(A[0] + 2), float(A[1] + 25), 38 * g, 60 * g, 45 * g), fat * 0.4),
    ]
    return prims
