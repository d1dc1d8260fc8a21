"""Analytic radiographic primitives of the phantom and their attenuation coefficients.

Everything here works in *object millimetres* of the coronal (AP) projection plane: ``x`` to the
image right, ``y`` down (towards the feet). Rays are parallel to ``z`` (orthographic AP
projection), so a primitive's contribution to a pixel is its chord length (mm) along ``z`` at that
pixel's ``(x, y)``. All primitives are symmetric about the ``z = 0`` plane and have their in-plane
axes in the coronal plane, which is what keeps the projected landmarks exact.

Holds: the linear attenuation coefficients (``MU_*``, 1/mm), :class:`Ellipsoid` (superellipsoid),
:class:`Tube` (tapered capsule), :class:`Body` (one radiographic object made of primitives), and
the small builders the bones, soft tissue and implants are made with (``_ell``, ``_tube``,
``_shrunk``, ``_bone``, :func:`corner_superellipse`; angles in degrees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------
# Linear attenuation coefficients, 1/mm, *relative to water/soft tissue where stated*.
# Effective energy ~55-60 keV (long-leg technique ~80-90 kVp with filtration).
MU_FAT = 0.0175
MU_MUSCLE = 0.0210
MU_CORTEX = 0.0380  # cortical bone minus the soft tissue it displaces
MU_TRAB = 0.0110  # trabecular (cancellous) bone minus soft tissue
MU_MARROW = 0.0010  # fatty marrow of a diaphysis minus soft tissue
MU_METAL = 0.90  # CoCr / steel implants (minus soft tissue; saturates anyway)
MU_LEAD = 3.0


def _rot(v: np.ndarray, ang_deg: float) -> np.ndarray:
    a = math.radians(ang_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.hypot(v[0], v[1]))


# --------------------------------------------------------------------------------------
# Primitives
@dataclass
class Ellipsoid:
    """Superellipsoid: in-plane superellipse ``|du/a|^p + |dv/b|^p <= 1`` (``u`` along
    angle ``phi`` deg), depth half-axis ``c``.  Chord = ``2c*sqrt(1 - rho^2)`` (exact for
    ``p = 2``: an ellipsoid)."""

    cx: float
    cy: float
    a: float
    b: float
    c: float
    phi: float = 0.0
    p: float = 2.0

    def bbox(self) -> tuple[float, float, float, float]:
        r = math.hypot(self.a, self.b) if self.p > 2.0 else None
        ca, sa = abs(math.cos(math.radians(self.phi))), abs(math.sin(math.radians(self.phi)))
        if r is None:  # exact ellipse bbox
            hx = math.sqrt((self.a * ca) ** 2 + (self.b * sa) ** 2)
            hy = math.sqrt((self.a * sa) ** 2 + (self.b * ca) ** 2)
        else:
            hx = self.a * ca + self.b * sa
            hy = self.a * sa + self.b * ca
        return self.cx - hx, self.cy - hy, self.cx + hx, self.cy + hy

    def chord(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``xs``: (W,) mm of columns, ``ys``: (H,) mm of rows -> (H, W) chord mm."""
        ph = math.radians(self.phi)
        c, s = math.cos(ph), math.sin(ph)
        dx = (xs - self.cx).astype(np.float32)[None, :]
        dy = (ys - self.cy).astype(np.float32)[:, None]
        du = (dx * (c / self.a) + dy * (s / self.a))
        dv = (dy * (c / self.b) - dx * (s / self.b))
        if self.p == 2.0:
            q = du * du + dv * dv
        else:
            q = (np.abs(du) ** self.p + np.abs(dv) ** self.p) ** (2.0 / self.p)
        np.subtract(1.0, q, out=q)
        np.maximum(q, 0.0, out=q)
        np.sqrt(q, out=q)
        q *= 2.0 * self.c
        return q


@dataclass
class Tube:
    """Tapered capsule with its axis in the coronal plane from (x0,y0) to (x1,y1).

    ``d`` = distance to the closest axis point (axial fraction ``t`` clipped to [0, 1], so the
    ends are rounded); cross-section: superellipse of in-plane half-width ``a(t)`` and depth
    half-axis ``c(t)`` (linear in ``t``), exponent ``p`` (2 = elliptic, large = box).
    Chord = ``2c (1 - |d/a|^p)^(1/p)``."""

    x0: float
    y0: float
    x1: float
    y1: float
    a0: float
    a1: float
    c0: float
    c1: float
    p: float = 2.0

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.a0, self.a1)
        return (min(self.x0, self.x1) - r, min(self.y0, self.y1) - r,
                max(self.x0, self.x1) + r, max(self.y0, self.y1) + r)

    def chord(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        ex, ey = self.x1 - self.x0, self.y1 - self.y0
        ln2 = ex * ex + ey * ey
        dx = (xs - self.x0).astype(np.float32)[None, :]
        dy = (ys - self.y0).astype(np.float32)[:, None]
        t = (dx * (ex / ln2) + dy * (ey / ln2))
        np.clip(t, 0.0, 1.0, out=t)
        # distance to the closest axis point (rounded, capsule-like ends)
        rx = dx - t * ex
        ry = dy - t * ey
        d = np.sqrt(rx * rx + ry * ry)
        a = self.a0 + (self.a1 - self.a0) * t
        c = self.c0 + (self.c1 - self.c0) * t
        r = d / a
        if self.p == 2.0:
            q = 1.0 - r * r
            np.maximum(q, 0.0, out=q)
            np.sqrt(q, out=q)
        else:
            q = 1.0 - np.minimum(r, 1.0) ** self.p
            q = q ** (1.0 / self.p)
        q *= 2.0 * c
        return q


Prim = Ellipsoid | Tube


@dataclass
class Body:
    """One radiographic object: union (max of chords) of ``outer`` primitives with
    coefficient ``mu``; ``inner`` primitives (union) replace ``mu`` by their own coefficient
    (cortical shell = outer minus inner); ``holes`` subtract ``mu_h * chord`` (clipped at 0).
    Bodies are summed (separate objects along the ray)."""

    name: str
    outer: list[Prim]
    mu: float
    inner: list[tuple[Prim, float]] = field(default_factory=list)
    holes: list[tuple[Prim, float]] = field(default_factory=list)
    texture: float = 0.0  # relative amplitude of trabecular texture on the inner part
    metal: bool = False

def _ell(c: np.ndarray, a: float, b: float, depth: float, u: np.ndarray, p: float = 2.0) -> Ellipsoid:
    phi = math.degrees(math.atan2(u[1], u[0]))
    return Ellipsoid(float(c[0]), float(c[1]), a, b, depth, phi, p)


def _tube(p0: np.ndarray, p1: np.ndarray, a0: float, a1: float, c0: float, c1: float,
          p: float = 2.0) -> Tube:
    return Tube(float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]), a0, a1, c0, c1, p)


def _shrunk(pr: Prim, t: float, tz: float | None = None) -> Prim:
    """The primitive shrunk by ``t`` mm in plane (``tz`` in depth; default ``t``)."""
    tz = t if tz is None else tz
    if isinstance(pr, Ellipsoid):
        return Ellipsoid(pr.cx, pr.cy, max(pr.a - t, 0.5), max(pr.b - t, 0.5),
                         max(pr.c - tz, 0.5), pr.phi, pr.p)
    return Tube(pr.x0, pr.y0, pr.x1, pr.y1, max(pr.a0 - t, 0.5), max(pr.a1 - t, 0.5),
                max(pr.c0 - tz, 0.5), max(pr.c1 - tz, 0.5), pr.p)


def _bone(name: str, outer: list[Prim], cortex: list[float], inner_mu: list[float],
          mu: float = MU_CORTEX, texture: float = 0.08) -> Body:
    inner = [(_shrunk(pr, t), m) for pr, t, m in zip(outer, cortex, inner_mu)]
    return Body(name, outer, mu, inner, texture=texture)


def corner_superellipse(p0: np.ndarray, p1: np.ndarray, n: np.ndarray, half_h: float,
                        p: float, k: float, depth: float) -> Ellipsoid:
    """Superellipse block whose boundary passes *exactly* through the corner points
    ``p0``, ``p1`` (symmetric about their perpendicular bisector), body on the ``n`` side.

    The corners sit at ``du = +-k*a``; the block's extreme along ``-n`` lies slightly beyond
    the corner line (a flat, slightly domed articular surface)."""
    u = p1 - p0
    half_w = float(np.hypot(*u)) / 2.0
    u = u / (2 * half_w)
    a = half_w / k
    dn = half_h * (1.0 - k ** p) ** (1.0 / p)  # corner depth below the block's centre line
    c = (p0 + p1) / 2.0 + dn * n
    return _ell(c, a, half_h, depth, u, p)

