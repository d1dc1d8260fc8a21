"""Phantom cases: :func:`make_case` (parameters, anatomy, exact truth) and :func:`render` (pixels).

A case is fully determined by ``(seed, index, options)``.  :func:`make_case` is cheap (no
pixels): it samples parameters, constructs the anatomy and projects the exact landmarks.
:func:`render` rasterises (optionally only a window).

Writing cases to files (:func:`write_case`, :func:`generate`) is in
:mod:`cpak_cli.phantom.case_files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cpak_cli.core.cpak import CPAK_TYPES, cpak_type
from cpak_cli.core.geometry import leg_angles
from cpak_cli.core.landmarks import JOINTS, LANDMARKS, SIDES

from .anatomy import LegParams, build_leg
from .scene import Scene, Xform, distractor_bodies, hemipelvis, leg_soft, pelvis_soft, sacrum
from .spec import SPACINGS, PhantomOptions, quantize_spacing, rng_for, sample_angles, target_type

BOX_SIDE_MM = {"hip": (110.0, 130.0), "knee": (120.0, 150.0), "ankle": (80.0, 100.0)}


@dataclass
class PhantomCase:
    """One phantom film: acquisition parameters, exact truth and the scene to render.

    Coordinates: pixel ``(x, y)`` (x = column, y = row, origin at the centre of the top-left
    pixel); ``spacing_mm = (row_mm, col_mm)`` is the *effective* spacing (object plane) that a
    reader derives from the DICOM tags.
    """

    index: int
    seed: int
    shape: tuple[int, int]  # (rows, cols)
    spacing_mm: tuple[float, float]  # effective (row_mm, col_mm)
    spacing_tag: str  # "PixelSpacing" | "ImagerPixelSpacing"
    magnification: float  # EstimatedRadiographicMagnificationFactor (1.0 with PixelSpacing)
    photometric: str  # "MONOCHROME2" | "MONOCHROME1"
    bits_stored: int
    compression: str  # "none" | "rle" | "jpeg2000"
    patient_right_on_image_left: bool
    laterality: str  # "B", "R" or "L"
    landmarks: dict[str, dict[str, tuple[float, float]]]  # side -> name -> (x, y) px (in film only)
    boxes: dict[str, dict[str, list[float]]]  # side -> joint -> [x0, y0, x1, y1] px
    angles: dict[str, dict[str, Any]]  # side -> {"ldfa","mpta","ahka","jlo","cpak"} (true)
    options: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict, repr=False)  # sampled parameters
    spacing_strings: tuple[str, str] = ("", "")  # DS values written to the spacing tag
    magnification_string: str | None = None
    scene: Scene | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"case{self.index:04d}"


# ---------------------------------------------------------------------------------------
def _truth_angles(pts: dict[str, tuple[float, float]], spacing_mm: tuple[float, float]) -> dict[str, Any]:
    """True angles from the projected landmarks, with the project's own math."""
    la = leg_angles({k: (float(v[0]), float(v[1])) for k, v in pts.items()}, spacing_mm)
    ldfa, mpta = float(la.ldfa), float(la.mpta)
    return {"ldfa": ldfa, "mpta": mpta, "ahka": mpta - ldfa, "jlo": mpta + ldfa,
            "cpak": str(cpak_type(mpta - ldfa, mpta + ldfa))}


# ---------------------------------------------------------------------------------------
def _leg_params(seed: int, index: int, side: str, size: float, opts: PhantomOptions) -> tuple[LegParams, dict]:
    rng = rng_for(seed, index, 1 if side == "right" else 2)
    t = target_type(index, side)
    ldfa, mpta, border = sample_angles(rng, t, opts.borderline_fraction)
    tka = bool(rng.random() < opts.tka_fraction)
    plate = (not tka) and bool(rng.random() < opts.plate_fraction)
    femur_len = float(np.clip(rng.normal(435.0, 18.0), 395, 480)) * size
    lp = LegParams(
        ldfa=ldfa, mpta=mpta, femur_len=femur_len,
        tibia_len=femur_len * float(rng.uniform(0.80, 0.88)),
        theta_f=float(rng.uniform(1.5, 4.5)), anat_mech=float(rng.uniform(5.0, 7.0)),
        nsa=float(rng.uniform(122.0, 138.0)), head_r=float(rng.uniform(22.0, 26.0)) * size,
        jlca=float(rng.uniform(-1.0, 1.5)), ankle_tilt=float(rng.uniform(-3.0, 3.0)), size=size,
        joint_space=(11.0 if tka else float(rng.uniform(2.5, 6.5))) * size,
        rotation=float(rng.uniform(-1.0, 1.0)), tka=tka, plate=plate, seed=int(rng.integers(1 << 30)))
    meta = {"target_cpak": CPAK_TYPES[t], "borderline": border, "stance_deg": float(rng.uniform(-1.5, 2.0))}
    return lp, meta


def make_case(seed: int, index: int, **options: Any) -> "PhantomCase":
    """Sample and construct case ``index`` of the set ``seed`` (no pixels; cheap).

    ``options`` are :class:`~cpak_cli.phantom.spec.PhantomOptions` fields (e.g. ``scale=0.1``,
    ``max_size=1024``, ``spacing_mm=(0.15, 0.148)``, ``compression="rle"``,
    ``single_leg_fraction=0.1``, ``missing_ankle_fraction=0.1``, ``flipped_fraction=0.1``).
    """
    opts = PhantomOptions.from_kwargs(**options)
    g = rng_for(seed, index, 0)
    size = float(np.clip(g.normal(1.0, 0.055), 0.88, 1.13))
    girth = size * float(g.uniform(0.85, 1.35))
    fat = float(g.uniform(4.0, 20.0)) * girth
    hip_half = float(g.uniform(82.0, 98.0)) * size
    tilt = float(g.uniform(-1.5, 1.5))
    single = bool(g.random() < opts.single_leg_fraction)
    single_side = SIDES[int(g.integers(2))]
    no_ankle = bool(g.random() < opts.missing_ankle_fraction)
    flipped = bool(g.random() < opts.flipped_fraction)
    mono1 = bool(g.random() < opts.monochrome1_fraction)
    imager = bool(g.random() < opts.imager_spacing_fraction)
    aniso = bool(g.random() < opts.anisotropic_fraction)
    bits = int(g.choice([12, 14, 15, 16]))
    if opts.bits_stored is not None:
        bits = int(opts.bits_stored)
    comp = opts.compression if opts.compression != "mixed" else str(g.choice(["none", "rle", "jpeg2000"]))
    vc = None
    if opts.variety:  # own stream: the draws above are consumed exactly as without variety
        from .variety import case_variety

        vc = case_variety(seed, index, opts.bits_stored)
        size, girth, fat, hip_half, bits = vc["size"], vc["girth"], vc["fat"], vc["hip_half"], vc["bits"]

    # ---------------------------------------------------------------- legs in the world frame
    pelvis_xf = Xform.make(tilt)
    legs, metas, xfs, lps = {}, {}, {}, {}
    for side in SIDES:
        lp, meta = _leg_params(seed, index, side, size, opts)
        if vc is not None:
            from .variety import vary_leg

            vary_leg(lp, meta, seed, index, side, vc["ped"])
        lps[side], metas[side] = lp, meta
        legs[side] = build_leg(lp)
    # stance: keep knees and ankles apart (abduct both legs symmetrically if needed)
    extra = 0.0
    for _ in range(40):
        for side in SIDES:
            st = metas[side]["stance_deg"] + extra
            if side == "right":
                local = Xform.make(st, False, (-hip_half, 0.0))
            else:
                local = Xform.make(-st, True, (hip_half, 0.0))
            xfs[side] = local.then(pelvis_xf)
        kr = xfs["right"].pt(legs["right"].landmarks["knee_center"])
        kl = xfs["left"].pt(legs["left"].landmarks["knee_center"])
        ar = xfs["right"].pt(legs["right"].extra["A"])
        al = xfs["left"].pt(legs["left"].extra["A"])
        if kl[0] - kr[0] >= 100.0 * size and al[0] - ar[0] >= 62.0 * size:
            break
        extra += 0.5

    world_lm = {s: {n: xfs[s].pt(p) for n, p in legs[s].landmarks.items()} for s in SIDES}

    # ---------------------------------------------------------------- field of view
    if single:
        W = float(g.uniform(200.0, 260.0))
        kx = world_lm[single_side]["knee_center"][0]
        cx = kx + float(g.uniform(-15, 15))
    else:
        W = float(g.choice([350.0, 430.0])) if g.random() < 0.8 else float(g.uniform(360.0, 430.0))
        cx = float(g.uniform(-20.0, 20.0))
    hip_y = max(world_lm[s]["femoral_head"][1] for s in SIDES)
    hip_top = min(world_lm[s]["femoral_head"][1] for s in SIDES)
    ank_y = max(max(world_lm[s]["ankle_lateral"][1], world_lm[s]["ankle_medial"][1]) for s in SIDES)
    ank_top = min(min(world_lm[s]["ankle_lateral"][1], world_lm[s]["ankle_medial"][1]) for s in SIDES)
    top = hip_top - float(g.uniform(70.0, 220.0))
    bottom = ank_y + float(g.uniform(50.0, 130.0))
    if bottom - top < 900.0:
        bottom = top + 900.0
    if bottom - top > 1300.0:
        top = max(bottom - 1300.0, hip_top - 45.0)
    if vc is not None and not single:  # film sized to the (possibly small) patient
        top = hip_top - vc["fov_top"] * size
        bottom = ank_y + vc["fov_bottom"] * size
        cx = vc["fov_cx"] * size
        span = max(abs(world_lm[s][n][0] - cx) for s in SIDES for n in world_lm[s])
        W = max(vc["fov_ratio"] * (bottom - top), 2.0 * (span + 35.0 * girth))
    if no_ankle:
        bottom = ank_top - float(g.uniform(15.0, 120.0))
    Hmm = bottom - top
    _ = hip_y

    # ---------------------------------------------------------------- spacing
    if opts.spacing_mm is not None:
        eff = opts.spacing_mm
    else:
        base = float(g.choice(SPACINGS))
        eff = (base, base)
        if aniso:
            eps = float(g.uniform(0.005, 0.03)) * (1 if g.random() < 0.5 else -1)
            eff = (base, base * (1.0 + eps))
    eff = (eff[0] / opts.scale, eff[1] / opts.scale)
    if opts.max_size is not None:
        m = max(Hmm / eff[0], W / eff[1])
        if m > opts.max_size:
            f = m / opts.max_size * 1.0005
            eff = (eff[0] * f, eff[1] * f)
    mag = float(g.uniform(1.05, 1.20)) if imager else None
    spacing, sp_str, mag_str = quantize_spacing(eff, mag)
    rows = max(8, int(round(Hmm / spacing[0])))
    cols = max(8, int(round(W / spacing[1])))
    W_film = (cols - 1) * spacing[1]

    to_film = Xform.make(0.0, False, (W / 2 - cx, -top))
    if flipped:
        to_film = to_film.then(Xform(np.diag([-1.0, 1.0]), np.array([W_film, 0.0])))

    # ---------------------------------------------------------------- scene
    bodies, soft = [], []
    for side in SIDES:
        full = xfs[side].then(to_film)
        for b in legs[side].bodies:
            bodies.append(full.body(b))
        soft += leg_soft(legs[side], full, girth, fat)
        hemi_xf = (Xform.make(0.0, False, (-hip_half, 0.0)) if side == "right"
                   else Xform.make(0.0, True, (hip_half, 0.0))).then(pelvis_xf).then(to_film)
        for b in hemipelvis(hip_half, size, lps[side].head_r):
            bodies.append(hemi_xf.body(b))
    p_to_film = pelvis_xf.then(to_film)
    for b in sacrum(hip_half, size):
        bodies.append(p_to_film.body(b))
    soft = [(p_to_film.prim(p), f) for p, f in pelvis_soft(hip_half, girth, fat)] + soft

    film_lm_mm = {s: {n: to_film.pt(p) for n, p in world_lm[s].items()} for s in SIDES}
    scene = Scene(bodies=bodies, soft=soft, width_mm=W_film, height_mm=(rows - 1) * spacing[0])

    d = rng_for(seed, index, 3)
    if opts.distractors:
        knees = [film_lm_mm[s]["knee_center"] for s in SIDES if not single or s == single_side]
        hips = [film_lm_mm[s]["femoral_head"] for s in SIDES]
        scene.bodies += distractor_bodies(d, W_film, scene.height_mm, knees, hips)
        # lead side marker on the patient's side
        mside = single_side if single else SIDES[int(d.integers(2))]
        on_left = (mside == "right") != flipped
        mh = float(d.uniform(12.0, 18.0))
        scene.marker = {"text": "R" if mside == "right" else "L", "h": mh, "bold": True,
                        "x": float(d.uniform(8, 40)) if on_left else W_film - float(d.uniform(25, 50)),
                        "y": float(d.uniform(60.0, 0.45 * scene.height_mm))}
        if d.random() < 0.7:
            th = float(d.uniform(4.0, 7.0))
            x = float(d.uniform(5, 20))
            lines = [f"PHANTOM^CASE{index:04d}", "STANDING AP LONG LEG",
                     f"{85 + int(d.integers(-10, 11))} kV  {int(d.integers(8, 40))} mAs"]
            scene.text = [{"text": t, "x": x, "y": 8 + th * (1.0 + 1.6 * i), "h": th} for i, t in enumerate(lines)]
            if d.random() < 0.5:
                scene.text.append({"text": "STITCHED", "x": W_film - 9 * th, "y": scene.height_mm - 10, "h": th})
        if d.random() < 0.6:
            n = 2 if d.random() < 0.5 else 3
            for k in range(1, n):
                scene.seams.append({"y": k * scene.height_mm / n + float(d.uniform(-30, 30)),
                                    "h": float(d.uniform(1.0, 4.0)), "dl": float(d.uniform(0.02, 0.12)),
                                    "gain": float(d.uniform(0.93, 1.07))})

    if vc is not None:
        from .variety import shields_and_collimation

        xs_all = [film_lm_mm[s][n][0] for s in SIDES for n in film_lm_mm[s]]
        vc["extras"] = shields_and_collimation(
            seed, index, scene, [film_lm_mm[s]["femoral_head"] for s in SIDES],
            max(lps[s].head_r for s in SIDES), hip_half, size, (min(xs_all), max(xs_all)))

    # ---------------------------------------------------------------- landmarks / truth / boxes
    rowmm, colmm = spacing
    all_px = {s: {n: (float(p[0] / colmm), float(p[1] / rowmm)) for n, p in film_lm_mm[s].items()} for s in SIDES}

    def inside(pt: tuple[float, float]) -> bool:
        return 0.0 <= pt[0] <= cols - 1 and 0.0 <= pt[1] <= rows - 1

    landmarks: dict[str, dict[str, tuple[float, float]]] = {}
    angles: dict[str, dict[str, Any]] = {}
    boxes: dict[str, dict[str, list[float]]] = {}
    bx = rng_for(seed, index, 5)
    for s in SIDES:
        vis = {n: all_px[s][n] for n in LANDMARKS if inside(all_px[s][n])}
        on_film = ("knee_center" in vis or "femoral_head" in vis) and (not single or s == single_side)
        if not on_film:
            continue
        landmarks[s] = vis
        angles[s] = _truth_angles(all_px[s], spacing)
        boxes[s] = {}
        for joint, names in JOINTS.items():
            side_mm = float(bx.uniform(*BOX_SIDE_MM[joint]))
            off = bx.uniform(-0.12, 0.12, size=2) * side_mm
            if not all(n in vis for n in names):
                continue
            pts = np.array([film_lm_mm[s][n] for n in names])
            cen = pts.mean(axis=0) + off
            half = side_mm / 2.0
            for _ in range(50):  # keep every landmark >= 5 mm inside the box
                if np.all(np.abs(pts - cen) <= half - 5.0):
                    break
                cen = cen + 0.2 * (pts.mean(axis=0) - cen)
                half += 1.0
            boxes[s][joint] = [float((cen[0] - half) / colmm), float((cen[1] - half) / rowmm),
                               float((cen[0] + half) / colmm), float((cen[1] + half) / rowmm)]

    rp = rng_for(seed, index, 4)
    eq = float(rp.uniform(0.35, 0.6))
    render_params: dict[str, Any] = {
        "n0": float(rp.uniform(700.0, 4000.0)), "heel": float(rp.uniform(-0.25, 0.25)),
        "scatter": float(rp.uniform(0.05, 0.25)), "scatter_sigma_mm": 30.0,
        "blur_px": float(rp.uniform(0.8, 1.5)), "eq": eq, "eq_sigma_mm": float(rp.uniform(20.0, 32.0)),
        "detail": float(rp.uniform(0.3, 0.9)), "detail_sigma_mm": float(rp.uniform(1.5, 3.0)),
        "p_lo": -0.25 - 0.2 * (1 - eq), "p_hi": 0.5 + 4.2 * (1 - eq) + 0.6,
    }

    if vc is not None:
        from .variety import look_params

        render_params = look_params(seed, index, girth, vc["ped"])

    params = {
        "size": size, "girth": girth, "fat_mm": fat, "hip_half_mm": hip_half, "pelvic_tilt_deg": tilt,
        "single_leg": single, "single_side": single_side if single else None, "missing_ankle": no_ankle,
        "flipped": flipped, "field_mm": [float(Hmm), float(W)],
        "legs": {s: {"ldfa": lps[s].ldfa, "mpta": lps[s].mpta, "tka": lps[s].tka, "plate": lps[s].plate,
                     "femur_len_mm": lps[s].femur_len, "tibia_len_mm": lps[s].tibia_len,
                     "rotation": lps[s].rotation, **metas[s]} for s in SIDES},
        "render": render_params,
    }
    if vc is not None:
        params["variety"] = {"pediatric": vc["ped"], "bits_stored": bits, **vc.get("extras", {}),
                             "look": "eos" if render_params["look"]["eos"] else "dr"}
    laterality = single_side[0].upper() if single else "B"
    return PhantomCase(
        index=index, seed=seed, shape=(rows, cols), spacing_mm=spacing,
        spacing_tag="ImagerPixelSpacing" if imager else "PixelSpacing",
        magnification=float(mag_str) if mag_str else 1.0, photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
        bits_stored=bits, compression=comp, patient_right_on_image_left=not flipped, laterality=laterality,
        landmarks=landmarks, boxes=boxes, angles=angles, options=opts.to_dict(), params=params,
        spacing_strings=sp_str, magnification_string=mag_str, scene=scene)


def render(case: PhantomCase, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Render the film (or the window ``roi = (x0, y0, x1, y1)``, x1/y1 exclusive) to uint16
    stored values, MONOCHROME2 sense (bone bright), before MONOCHROME1 inversion/compression.
    Pixels of the window outside the film are 0."""
    from .render import render_region

    return render_region(case, roi)

