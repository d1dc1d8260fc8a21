"""Composition of a whole film: pelvis, both legs, soft tissue and distractors, placed in
film millimetres (origin at the centre of the top-left pixel, x right, y down).

Placements are rigid motions, optionally with a mirror (``det = -1``), so every unsigned
angle of the canonical construction is preserved exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .anatomy import Leg, soft_tissue
from .primitives import MU_CORTEX, MU_LEAD, MU_METAL, MU_TRAB, Body, Ellipsoid, Prim, Tube, _bone, _tube


@dataclass
class Xform:
    """``p' = M @ p + t`` with ``M`` orthogonal (rotation, optionally with a mirror)."""

    M: np.ndarray
    t: np.ndarray

    @staticmethod
    def make(rot_deg: float = 0.0, mirror: bool = False, t: tuple[float, float] = (0.0, 0.0)) -> "Xform":
        a = math.radians(rot_deg)
        R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        F = np.diag([-1.0, 1.0]) if mirror else np.eye(2)
        return Xform(R @ F, np.asarray(t, dtype=float))

    def then(self, other: "Xform") -> "Xform":
        """Composition: first ``self``, then ``other``."""
        return Xform(other.M @ self.M, other.M @ self.t + other.t)

    def pt(self, p: np.ndarray | Sequence[float]) -> np.ndarray:
        return self.M @ np.asarray(p, dtype=float) + self.t

    def prim(self, pr: Prim) -> Prim:
        if isinstance(pr, Ellipsoid):
            c = self.pt([pr.cx, pr.cy])
            u = self.M @ np.array([math.cos(math.radians(pr.phi)), math.sin(math.radians(pr.phi))])
            return Ellipsoid(float(c[0]), float(c[1]), pr.a, pr.b, pr.c,
                             math.degrees(math.atan2(u[1], u[0])), pr.p)
        p0, p1 = self.pt([pr.x0, pr.y0]), self.pt([pr.x1, pr.y1])
        return Tube(float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]),
                    pr.a0, pr.a1, pr.c0, pr.c1, pr.p)

    def body(self, b: Body) -> Body:
        return Body(b.name, [self.prim(p) for p in b.outer], b.mu,
                    [(self.prim(p), m) for p, m in b.inner],
                    [(self.prim(p), m) for p, m in b.holes], b.texture, b.metal)


@dataclass
class Scene:
    """Everything the renderer needs, in film mm."""

    bodies: list[Body]
    soft: list[tuple[Prim, float]]  # (skin envelope primitive, fat thickness mm)
    width_mm: float
    height_mm: float
    marker: dict | None = None  # lead side marker {"text", "x", "y", "h"} (mm)
    text: list[dict] = field(default_factory=list)  # burned-in annotations
    seams: list[dict] = field(default_factory=list)  # stitching seams {"y", "h", "dl", "gain"}
    shields: list[dict] = field(default_factory=list)  # lead polygons {"pts": [(x, y) mm], "mu"}
    collimation: dict | None = None  # {"x0", "x1", "slope", "mu", "shutter"}: open field x0..x1


def hemipelvis(hip_half: float, s: float, head_r: float) -> list[Body]:
    """Canonical right hemipelvis: hip centre at origin, medial = +x, midline at x=hip_half."""
    mid = hip_half
    acet = _bone("acetabulum", [
        Ellipsoid(5 * s, -16 * s, 38 * s, 35 * s, 30 * s, 0.0, 2.0),
        _tube(np.array([5 * s, -35 * s]), np.array([14 * s, -85 * s]), 26 * s, 34 * s, 16 * s, 9 * s),
    ], [2.5 * s, 2.0 * s], [MU_TRAB, MU_TRAB])
    # acetabular fossa: spherical cavity around the head (joint space ~ 3 mm)
    acet.holes.append((Ellipsoid(0.0, 0.0, head_r + 2.8 * s, head_r + 2.8 * s, head_r + 2.8 * s), MU_CORTEX * 0.55))
    ilium = _bone("ilium", [
        Ellipsoid(-2 * s, -120 * s, 72 * s, 78 * s, 7.5 * s, -18.0, 2.2),
    ], [2.2 * s], [MU_TRAB * 1.3], texture=0.12)
    ring_c = np.array([36 * s + 0.25 * (mid - 90 * s), 48 * s])
    ring = Body("pubis", [
        Ellipsoid(float(ring_c[0]), float(ring_c[1]), max(mid - ring_c[0] + 6 * s, 40 * s), 40 * s, 13 * s, 0.0, 2.3),
    ], MU_CORTEX * 0.75,
        holes=[(Ellipsoid(float(ring_c[0] - 2 * s), float(ring_c[1] + 3 * s), 21 * s, 27 * s, 1e3, 8.0, 2.0), 10.0)],
        texture=0.1)
    ischium = _bone("ischium",
                    [Ellipsoid(float(ring_c[0] - 14 * s), float(ring_c[1] + 34 * s), 20 * s, 17 * s, 16 * s, 25.0, 2.2)],
                    [2.0 * s], [MU_TRAB])
    return [acet, ilium, ring, ischium]


def sacrum(hip_half: float, s: float) -> list[Body]:
    """Sacrum / lower lumbar spine in the pelvis frame (origin = midpoint of the hips)."""
    b = _bone("sacrum", [
        Ellipsoid(0.0, -95 * s, 46 * s, 60 * s, 11 * s, 0.0, 2.2),
        Ellipsoid(0.0, -182 * s, 27 * s, 15 * s, 15 * s, 0.0, 4.0),  # L5 body
        Ellipsoid(0.0, -222 * s, 26 * s, 15 * s, 15 * s, 0.0, 4.0),  # L4 body
    ], [2.0 * s, 1.8 * s, 1.8 * s], [MU_TRAB * 0.7, MU_TRAB, MU_TRAB], texture=0.1)
    # sacral foramina: small lucent holes in two columns
    for k in range(4):
        for sg in (-1, 1):
            b.holes.append((Ellipsoid(sg * 22 * s, (-130 + 22 * k) * s, 5 * s, 4 * s, 8 * s), MU_TRAB))
    return [b]


def distractor_bodies(rng: np.random.Generator, width: float, height: float, knees: list[np.ndarray],
                      hips: list[np.ndarray]) -> list[Body]:
    """Calibration ball and ruler (physical objects in the beam)."""
    out: list[Body] = []
    if rng.random() < 0.5:  # 25 mm steel calibration sphere
        k = knees[int(rng.integers(len(knees)))]
        if len(knees) == 2 and rng.random() < 0.5:
            c = (knees[0] + knees[1]) / 2 + np.array([0.0, rng.uniform(-150, 150)])
        else:
            side = -1 if k[0] < width / 2 else 1
            c = k + np.array([side * rng.uniform(80, 110), rng.uniform(-200, 100)])
        c[0] = float(np.clip(c[0], 20, width - 20))
        out.append(Body("ball", [Ellipsoid(float(c[0]), float(c[1]), 12.5, 12.5, 12.5)], MU_METAL * 1.2, metal=True))
    if rng.random() < 0.4:  # radio-opaque ruler along one side, 1 cm ticks
        x = rng.uniform(12, 30) if rng.random() < 0.5 else width - rng.uniform(12, 30)
        y0, y1 = rng.uniform(0, 100), height - rng.uniform(0, 100)
        ticks: list[Prim] = [Tube(x - 6, y0, x - 6, y1, 0.6, 0.6, 1.0, 1.0, 8.0)]
        y = y0 + 5
        i = 0
        while y < y1 - 2:
            ln = 9.0 if i % 10 == 0 else (6.0 if i % 5 == 0 else 3.5)
            ticks.append(Tube(x - 6, y, x - 6 + ln, y, 0.35, 0.35, 1.0, 1.0, 8.0))
            y += 10.0
            i += 1
        out.append(Body("ruler", ticks, MU_LEAD, metal=True))
    return out


def leg_soft(leg: Leg, xf: Xform, girth: float, fat: float) -> list[tuple[Prim, float]]:
    return [(xf.prim(p), f) for p, f in soft_tissue(leg, girth, fat)]


def pelvis_soft(hip_half: float, girth: float, fat: float) -> list[tuple[Prim, float]]:
    w = hip_half + 95 * girth
    return [(Ellipsoid(0.0, -40.0, w, 185 * girth, 115 * girth), fat * 1.3),
            (Ellipsoid(0.0, -230.0, w * 0.85, 120 * girth, 110 * girth), fat * 1.3)]
