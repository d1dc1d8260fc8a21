"""Rasterisation of a :class:`~cpak_cli.phantom.scene.Scene` into a DX-like image.

Pipeline (per pixel, parallel AP rays):

1. line integral ``L = sum_bodies mu * chord`` from analytic chord lengths (max-union of a
   body's primitives; cortical shell = outer minus inner solid; trabecular texture);
2. photon counts ``N = N0 * heel(y) * exp(-L)`` plus low-frequency scatter;
3. quantum noise (Gaussian approximation of Poisson, variance = counts);
4. detector blur (Gaussian, ~1-1.5 px);
5. log response ``P = log(N0 / N)``, multi-scale processing (dynamic-range equalisation
   + detail enhancement) like clinical DR post-processing;
6. linear mapping to unsigned ``bits_stored`` integers (MONOCHROME2: bone bright),
   stitching seams and burned-in text.

Every spatial quantity is evaluated at absolute film positions, so rendering a window
(``roi``) gives the same picture as cropping the full render (up to the noise realisation and
tiny differences of the low-pass filters near the window border, which a margin absorbs).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .primitives import MU_FAT, MU_MUSCLE, Prim, _shrunk
from .spec import rng_for

if TYPE_CHECKING:  # pragma: no cover
    from .generate import PhantomCase
    from .scene import Scene


def _scene(case: "PhantomCase") -> "Scene":
    """The case's scene (cases from :func:`make_case` carry one; a bare case cannot be rendered)."""
    if case.scene is None:
        raise ValueError("this phantom case has no scene to render")
    return case.scene


def _index_range(bb: tuple[float, float, float, float], region: tuple[int, int, int, int],
                 spacing: tuple[float, float]) -> tuple[int, int, int, int] | None:
    """Region-local pixel index range ``(i0, i1, j0, j1)`` (cols, rows) covering a mm bbox."""
    x0, y0, x1, y1 = region
    row_mm, col_mm = spacing
    c0 = max(int(math.floor(bb[0] / col_mm)), x0)
    c1 = min(int(math.ceil(bb[2] / col_mm)) + 1, x1)
    r0 = max(int(math.floor(bb[1] / row_mm)), y0)
    r1 = min(int(math.ceil(bb[3] / row_mm)) + 1, y1)
    if c0 >= c1 or r0 >= r1:
        return None
    return c0 - x0, c1 - x0, r0 - y0, r1 - y0


def _union(prims: list[Prim], region, spacing, xs, ys, shape, weights=None):
    """Max-union of chords (optionally ``weight * chord``) over ``shape`` (region-local)."""
    buf = None
    for k, pr in enumerate(prims):
        ir = _index_range(pr.bbox(), region, spacing)
        if ir is None:
            continue
        i0, i1, j0, j1 = ir
        ch = pr.chord(xs[i0:i1], ys[j0:j1])
        if weights is not None:
            ch *= weights[k]
        if buf is None:
            buf = np.zeros(shape, np.float32)
        sub = buf[j0:j1, i0:i1]
        np.maximum(sub, ch, out=sub)
    return buf


def _bbox_union(prims: list[Prim]) -> tuple[float, float, float, float]:
    bbs = [p.bbox() for p in prims]
    return (min(b[0] for b in bbs), min(b[1] for b in bbs), max(b[2] for b in bbs), max(b[3] for b in bbs))


def texture_field(case: "PhantomCase", region: tuple[int, int, int, int]) -> np.ndarray:
    """Trabecular texture (zero mean, unit-ish std) at absolute film positions."""
    import cv2

    cell = 0.55  # mm
    row_mm, col_mm = case.spacing_mm
    H_mm, W_mm = case.shape[0] * row_mm, case.shape[1] * col_mm
    gh, gw = int(H_mm / cell) + 4, int(W_mm / cell) + 4
    rng = rng_for(case.seed, case.index, 77)
    g = rng.standard_normal((gh, gw), dtype=np.float32)
    g = cv2.GaussianBlur(g, (0, 0), sigmaX=0.6, sigmaY=1.6) - 0.7 * cv2.GaussianBlur(g, (0, 0), 3.0)
    g *= 1.0 / (float(g.std()) + 1e-6)
    x0, y0, x1, y1 = region
    mx = (np.arange(x0, x1, dtype=np.float32) * (col_mm / cell))[None, :].repeat(y1 - y0, 0)
    my = (np.arange(y0, y1, dtype=np.float32) * (row_mm / cell))[:, None].repeat(x1 - x0, 1)
    return cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def line_integral(case: "PhantomCase", region: tuple[int, int, int, int]) -> np.ndarray:
    """Attenuation line integral (dimensionless) over a pixel region ``(x0, y0, x1, y1)``."""
    scene = _scene(case)
    x0, y0, x1, y1 = region
    row_mm, col_mm = case.spacing_mm
    xs = np.arange(x0, x1, dtype=np.float64) * col_mm
    ys = np.arange(y0, y1, dtype=np.float64) * row_mm
    shape = (y1 - y0, x1 - x0)
    L = np.zeros(shape, np.float32)

    # soft tissue: skin envelope (fat) and muscle core, each a max-union
    look = case.params["render"].get("look")
    env = _union([p for p, _ in scene.soft], region, case.spacing_mm, xs, ys, shape)
    if env is not None:
        L += MU_FAT * env
        core = _union([_shrunk(p, f, f) for p, f in scene.soft], region, case.spacing_mm, xs, ys, shape)
        if core is not None:
            L += (MU_MUSCLE - MU_FAT) * core
        if look is not None:
            L *= look["soft_gain"]

    tex = None
    for b in scene.bodies:
        ir = _index_range(_bbox_union(b.outer), region, case.spacing_mm)
        if ir is None:
            continue
        i0, i1, j0, j1 = ir
        sub_region = (x0 + i0, y0 + j0, x0 + i1, y0 + j1)
        sxs, sys_ = xs[i0:i1], ys[j0:j1]
        sshape = (j1 - j0, i1 - i0)
        outer = _union(b.outer, sub_region, case.spacing_mm, sxs, sys_, sshape)
        if outer is None:
            continue
        Lb = b.mu * outer
        if b.inner:
            inner = _union([p for p, _ in b.inner], sub_region, case.spacing_mm, sxs, sys_, sshape)
            innerL = _union([p for p, _ in b.inner], sub_region, case.spacing_mm, sxs, sys_, sshape,
                            weights=[m for _, m in b.inner])
            if inner is not None:
                np.minimum(inner, outer, out=inner)
                Lb -= b.mu * inner
                if b.texture > 0:
                    if tex is None:
                        tex = texture_field(case, region)
                    if look is None:
                        innerL *= 1.0 + b.texture * 1.2 * tex[j0:j1, i0:i1]
                    else:
                        innerL *= 1.0 + b.texture * (1.2 * look["texture_gain"]) * tex[j0:j1, i0:i1]
                Lb += innerL
        for hp, hm in b.holes:
            hr = _index_range(hp.bbox(), sub_region, case.spacing_mm)
            if hr is None:
                continue
            h0, h1, k0, k1 = hr
            Lb[k0:k1, h0:h1] -= hm * hp.chord(sxs[h0:h1], sys_[k0:k1])
        np.maximum(Lb, 0.0, out=Lb)
        if look is not None and not b.metal:
            Lb *= look["bone_gain"]
        L[j0:j1, i0:i1] += Lb
    return L


def _shield_mask(shape: tuple[int, int], shields: list[dict], region: tuple[int, int, int, int],
                 spacing: tuple[float, float]) -> list[tuple[np.ndarray, float]]:
    """Anti-aliased masks (float32 0..1) of lead shield polygons (film mm) over ``region``."""
    import cv2

    out = []
    x0, y0 = region[0], region[1]
    row_mm, col_mm = spacing
    for sh in shields:
        P = np.array(sh["pts"], np.float64)
        px = np.stack([P[:, 0] / col_mm - x0, P[:, 1] / row_mm - y0], axis=1)
        if px[:, 0].max() < 0 or px[:, 1].max() < 0 or px[:, 0].min() > shape[1] or px[:, 1].min() > shape[0]:
            continue
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.rint(px * 16).astype(np.int32).reshape(-1, 1, 2)], 255, cv2.LINE_AA, shift=4)
        out.append((m.astype(np.float32) * (1.0 / 255.0), float(sh["mu"])))
    return out


def _collimation_mask(shape: tuple[int, int], col: dict, region: tuple[int, int, int, int],
                      spacing: tuple[float, float]) -> np.ndarray:
    """1 outside the open field (x0..x1 + slope * y, film mm), 0 inside; float32."""
    x0, y0, x1, y1 = region
    row_mm, col_mm = spacing
    xs = (np.arange(x0, x1, dtype=np.float32) * col_mm)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float32) * row_mm)[:, None]
    shift = col["slope"] * ys
    return ((xs < col["x0"] + shift) | (xs > col["x1"] + shift)).astype(np.float32)


def _lowpass(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Large-kernel Gaussian low-pass via down-sampling (cheap for sigma of tens of px)."""
    import cv2

    f = max(1, int(sigma_px / 3.0))
    if f == 1:
        return cv2.GaussianBlur(img, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    h, w = img.shape
    sm = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    sm = cv2.GaussianBlur(sm, (0, 0), sigma_px / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(sm, (w, h), interpolation=cv2.INTER_LINEAR)


def _text_layout(item: dict, spacing: tuple[float, float]) -> tuple[float, float, int, float, int]:
    """How a text item placed in film mm is drawn: film-pixel origin ``(x, y)`` of its baseline's
    left end (cv2.putText ``org`` before rounding), font, font scale and stroke thickness."""
    import cv2

    row_mm, col_mm = spacing
    h_px = item["h"] / row_mm
    font = cv2.FONT_HERSHEY_SIMPLEX if not item.get("bold") else cv2.FONT_HERSHEY_DUPLEX
    return item["x"] / col_mm, item["y"] / row_mm, font, h_px / 22.0, max(1, int(round(h_px / 9.0)))


def text_boxes(case: "PhantomCase", marker: bool = False) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The burned-in annotations of ``case`` (patient name first) with the boxes they are drawn
    in: ``(text, (x0, y0, x1, y1))`` in film pixels (x = column, y = row, origin at the centre of
    the top-left pixel), covering every pixel the text sets, anti-aliasing included, possibly
    reaching past the film's border. ``marker=True`` appends the lead side marker letter.
    Empty when the case has no annotations (distractors off, or not drawn for this case)."""
    import cv2

    scene = _scene(case)
    items = list(scene.text) + ([scene.marker] if marker and scene.marker is not None else [])
    out = []
    for it in items:
        cx, cy, font, fs, th = _text_layout(it, case.spacing_mm)
        (w, h), base = cv2.getTextSize(it["text"], font, fs, th)
        ox, oy = int(round(cx)), int(round(cy))
        out.append((str(it["text"]), (float(ox - th - 1), float(oy - h - th - 1),
                                      float(ox + w + th + 1), float(oy + base + th + 1))))
    return out


def _draw_text_mask(shape: tuple[int, int], items: list[dict], region: tuple[int, int, int, int],
                    spacing: tuple[float, float]) -> np.ndarray | None:
    """Binary mask (float32 0/1) of text items placed in film mm, rendered into ``region``."""
    import cv2

    if not items:
        return None
    x0, y0, x1, y1 = region
    mask = None
    for it in items:
        cx, cy, font, fs, th = _text_layout(it, spacing)
        h_px = it["h"] / spacing[0]
        est_w = h_px * 0.9 * len(it["text"]) * 1.2
        if cx + est_w < x0 or cx - h_px > x1 or cy < y0 or cy - h_px * 1.5 > y1:
            continue
        if mask is None:
            mask = np.zeros(shape, np.uint8)
        cv2.putText(mask, it["text"], (int(round(cx - x0)), int(round(cy - y0))), font, fs, 255, th, cv2.LINE_AA)
    return None if mask is None else mask.astype(np.float32) * (1.0 / 255.0)


def _look(P: np.ndarray, look: dict, lo: float, hi: float, pix_mm: float, maxv: int,
          crop: tuple[slice, slice]) -> np.ndarray:
    """Variety film look: CLAHE-like local contrast normalisation (on the padded work region),
    then on the output window a clipping VOI window and gamma."""
    import cv2

    if look["lcn"] > 0:
        sig = look["lcn_sigma_mm"] / pix_mm
        m = _lowpass(P, sig)
        d = P - m
        sd = np.sqrt(np.maximum(_lowpass(d * d, sig), 0.0))
        gain = (look["lcn_target"] / (sd + 0.1 * look["lcn_target"])) ** look["lcn"]
        np.clip(gain, 0.6, 3.0, out=gain)  # clip limit
        P = m + d * gain
    P = P[crop]
    V: np.ndarray = (P - lo) * (1.0 / (hi - lo))
    np.clip(V, 0.0, 1.0, out=V)
    V = V.astype(np.float32, copy=False)
    if look["gamma"] != 1.0:
        V = cv2.pow(V, float(look["gamma"]))
    V *= maxv * look["top"]
    return V


def render_region(case: "PhantomCase", roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Render ``roi = (x0, y0, x1, y1)`` (x1, y1 exclusive; default the whole film) to uint16
    stored values in MONOCHROME2 sense (bone bright), before MONOCHROME1 inversion."""
    import cv2

    rows, cols = case.shape
    if roi is None:
        roi = (0, 0, cols, rows)
    rx0, ry0, rx1, ry1 = (int(v) for v in roi)
    if not (rx0 < rx1 and ry0 < ry1):
        raise ValueError(f"empty roi {roi}")
    scene = _scene(case)
    q = case.params["render"]
    row_mm, col_mm = case.spacing_mm
    pix_mm = math.sqrt(row_mm * col_mm)
    sig_big_mm = q["eq_sigma_mm"]
    look = q.get("look")
    if look is None:
        margin = int(math.ceil(3.0 * sig_big_mm / pix_mm)) + 8
    else:
        margin = int(math.ceil(3.0 * max(sig_big_mm, look["lcn_sigma_mm"] if look["lcn"] else 0.0)
                               / pix_mm)) + 8
    # padded work region, clipped to the film (outside the film there is no detector)
    wx0, wy0 = max(0, rx0 - margin), max(0, ry0 - margin)
    wx1, wy1 = min(cols, rx1 + margin), min(rows, ry1 + margin)
    ox0, oy0, ox1, oy1 = max(rx0, 0), max(ry0, 0), min(rx1, cols), min(ry1, rows)
    out = np.zeros((ry1 - ry0, rx1 - rx0), np.uint16)
    if ox0 >= ox1 or oy0 >= oy1:
        return out
    region = (wx0, wy0, wx1, wy1)
    L = line_integral(case, region)

    # marker letters (lead): physical, in the beam
    if scene.marker is not None:
        m = _draw_text_mask(L.shape, [scene.marker], region, case.spacing_mm)
        if m is not None:
            L += 4.0 * m

    coll = None
    if look is not None:
        for m, mu in _shield_mask(L.shape, scene.shields, region, case.spacing_mm):
            L += mu * m
        if scene.collimation is not None:
            coll = _collimation_mask(L.shape, scene.collimation, region, case.spacing_mm)
            L += scene.collimation["mu"] * coll

    # seams: overlap band of two cassettes (extra attenuation) + gain step below
    ys_mm = np.arange(wy0, wy1, dtype=np.float32) * row_mm
    gain_col = np.ones(wy1 - wy0, np.float32)
    if look is not None and look["rowband"] > 0:  # slot-scanner line artefacts (per film row)
        rb = rng_for(case.seed, case.index, 78).standard_normal(rows).astype(np.float32)
        gain_col *= 1.0 + look["rowband"] * rb[wy0:wy1]
    for sm in scene.seams:
        band = (ys_mm >= sm["y"]) & (ys_mm < sm["y"] + sm["h"])
        L[band, :] += sm["dl"]
        gain_col[ys_mm >= sm["y"] + sm["h"]] *= sm["gain"]

    # photons
    H_mm = rows * row_mm
    heel = 1.0 + q["heel"] * (ys_mm / H_mm - 0.5)
    n0 = q["n0"] * (row_mm * col_mm) / (0.143 * 0.143)
    N = np.exp(-L)
    N *= (n0 * heel * gain_col)[:, None]
    if q["scatter"] > 0:
        N += q["scatter"] * _lowpass(N, q["scatter_sigma_mm"] / pix_mm)
    if case.options.get("noise", True):
        rng = rng_for(case.seed, case.index, 1000 + (wx0 * 7919 + wy0 * 104729) % 100003)
        noise = rng.standard_normal(N.shape, dtype=np.float32)
        noise *= np.sqrt(N)
        N += noise
    sig = q["blur_px"]
    N = cv2.GaussianBlur(N, (0, 0), sig, borderType=cv2.BORDER_REFLECT)
    np.maximum(N, 0.3, out=N)
    if look is not None and look["k"] > 0:  # power-law (towards linear) response
        P = (1.0 - (N / n0) ** look["k"]) / look["k"]
    else:
        P = np.log(n0 / N)  # ~ L, in attenuation units

    # multi-scale processing: equalise large-scale range, boost detail
    low = _lowpass(P, sig_big_mm / pix_mm)
    mid = cv2.GaussianBlur(P, (0, 0), q["detail_sigma_mm"] / pix_mm, borderType=cv2.BORDER_REFLECT)
    P = P - q["eq"] * low + q["detail"] * (P - mid)

    maxv = (1 << case.bits_stored) - 1
    lo, hi = q["p_lo"], q["p_hi"]
    if look is None:
        V = (P - lo) * (maxv * 0.97 / (hi - lo))
        V = V[oy0 - wy0:oy1 - wy0, ox0 - wx0:ox1 - wx0]
        np.clip(V, 0, maxv, out=V)
    else:
        crop = (slice(oy0 - wy0, oy1 - wy0), slice(ox0 - wx0, ox1 - wx0))
        V = _look(P, look, lo, hi, pix_mm, maxv, crop)
        if coll is not None and scene.collimation is not None and scene.collimation["shutter"]:
            V *= 1.0 - coll[crop]  # electronic shutter: collimated area black

    # burned-in annotation (display overlay: maximum value)
    tm = _draw_text_mask(V.shape, scene.text, (ox0, oy0, ox1, oy1), case.spacing_mm)
    if tm is not None:
        V = np.maximum(V, tm * maxv * 0.92)
    out[oy0 - ry0:oy1 - ry0, ox0 - rx0:ox1 - rx0] = np.rint(V).astype(np.uint16)
    return out
