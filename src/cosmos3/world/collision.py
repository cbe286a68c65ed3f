"""Contact geometry for the tabletop: rigid bodies (circles and convex polygons) and their contact manifolds.

collide(A, B, margin) returns (nx, ny, points) with the normal pointing from A to B and, per contact point, its
position and signed separation (negative = overlap), or None when the bodies are farther apart than margin.
Polygons use the separating-axis test, then clip the incident edge against the reference face (one or two contact
points, so that resting faces sit flat instead of rocking on one corner). Circles use closest points.
"""

from __future__ import annotations

import math


class Body:
    """A rigid body: a circle or a convex polygon. inv_mass == 0 means static or kinematic."""

    __slots__ = ("name", "kind", "radius", "local", "x", "y", "a", "vx", "vy", "w", "inv_m", "inv_i",
                 "verts", "normals", "bound")

    def __init__(self, name, kind, local, radius, x, y, a, mass=0.0, inertia=0.0):
        self.name, self.kind = name, kind
        self.local = local  # polygon vertices in the body frame, or None for a circle
        self.radius = radius  # circle radius (circles only)
        self.x, self.y, self.a = x, y, a
        self.vx = self.vy = self.w = 0.0
        self.inv_m = 1.0 / mass if mass > 0 else 0.0
        self.inv_i = 1.0 / inertia if inertia > 0 else 0.0
        self.bound = radius if local is None else max(math.hypot(px, py) for px, py in local)
        self.update()

    def update(self) -> None:
        """Recompute world vertices and outward edge normals after a pose change."""
        if self.local is None:
            self.verts = self.normals = None
            return
        c, s, x, y = math.cos(self.a), math.sin(self.a), self.x, self.y
        vs = [(x + c * px - s * py, y + s * px + c * py) for px, py in self.local]
        ns = []
        for i, (ax, ay) in enumerate(vs):
            bx, by = vs[(i + 1) % len(vs)]
            nx, ny = by - ay, ax - bx
            inv = 1.0 / math.hypot(nx, ny)
            nx, ny = nx * inv, ny * inv
            if nx * (ax - x) + ny * (ay - y) < 0:  # make it point away from the centroid, whatever the winding
                nx, ny = -nx, -ny
            ns.append((nx, ny))
        self.verts, self.normals = vs, ns


# ---- narrow phase: each returns (nx, ny, [(px, py, separation), ...]) with the normal pointing from A to B -----


def _max_separation(A: Body, B: Body) -> tuple[float, int]:
    best, best_i = -math.inf, 0
    for i, (nx, ny) in enumerate(A.normals):
        vx, vy = A.verts[i]
        s = min(nx * (bx - vx) + ny * (by - vy) for bx, by in B.verts)
        if s > best:
            best, best_i = s, i
    return best, best_i


def _clip(pts, nx, ny, off):
    """Keep the part of a segment where n . p >= off."""
    d = [nx * px + ny * py - off for px, py in pts]
    out = [p for p, di in zip(pts, d) if di >= 0]
    if len(pts) == 2 and d[0] * d[1] < 0:
        t = d[0] / (d[0] - d[1])
        (px, py), (qx, qy) = pts
        out.append((px + t * (qx - px), py + t * (qy - py)))
    return out


def _poly_poly(A: Body, B: Body, margin: float):
    sa, ia = _max_separation(A, B)
    if sa > margin:
        return None
    sb, ib = _max_separation(B, A)
    if sb > margin:
        return None
    # The reference face is the one of least penetration; prefer A on ties so results do not flicker.
    ref, inc, i, flip = (B, A, ib, True) if sb > sa + 1e-9 else (A, B, ia, False)
    nx, ny = ref.normals[i]
    (v1x, v1y), (v2x, v2y) = ref.verts[i], ref.verts[(i + 1) % len(ref.verts)]
    j = min(range(len(inc.normals)), key=lambda k: inc.normals[k][0] * nx + inc.normals[k][1] * ny)
    seg = [inc.verts[j], inc.verts[(j + 1) % len(inc.verts)]]
    tx, ty = v2x - v1x, v2y - v1y
    tl = math.hypot(tx, ty)
    tx, ty = tx / tl, ty / tl
    seg = _clip(seg, tx, ty, tx * v1x + ty * v1y)
    seg = _clip(seg, -tx, -ty, -(tx * v2x + ty * v2y))
    pts = []
    for px, py in seg:
        sep = nx * (px - v1x) + ny * (py - v1y)
        if sep <= margin:
            pts.append((px, py, sep))
    if not pts:
        return None
    return (-nx, -ny, pts) if flip else (nx, ny, pts)


def _poly_circle(A: Body, B: Body, margin: float):
    cx, cy, r = B.x, B.y, B.radius
    best, bi = -math.inf, 0
    for i, (nx, ny) in enumerate(A.normals):
        vx, vy = A.verts[i]
        s = nx * (cx - vx) + ny * (cy - vy)
        if s > best:
            best, bi = s, i
    if best > r + margin:
        return None
    nx, ny = A.normals[bi]
    if best <= 0:  # center inside the polygon: push out along the nearest face
        return (nx, ny, [(cx - nx * r, cy - ny * r, best - r)])
    (v1x, v1y), (v2x, v2y) = A.verts[bi], A.verts[(bi + 1) % len(A.verts)]
    if (cx - v1x) * (v2x - v1x) + (cy - v1y) * (v2y - v1y) <= 0:
        qx, qy = v1x, v1y
    elif (cx - v2x) * (v1x - v2x) + (cy - v2y) * (v1y - v2y) <= 0:
        qx, qy = v2x, v2y
    else:
        qx, qy = cx - nx * best, cy - ny * best
    dx, dy = cx - qx, cy - qy
    d = math.hypot(dx, dy)
    if d - r > margin:
        return None
    if d > 1e-12:
        nx, ny = dx / d, dy / d
    return (nx, ny, [(qx, qy, d - r)])


def _circle_circle(A: Body, B: Body, margin: float):
    dx, dy = B.x - A.x, B.y - A.y
    d = math.hypot(dx, dy)
    sep = d - A.radius - B.radius
    if sep > margin:
        return None
    nx, ny = (dx / d, dy / d) if d > 1e-12 else (1.0, 0.0)
    return (nx, ny, [(A.x + nx * A.radius, A.y + ny * A.radius, sep)])


def collide(A: Body, B: Body, margin: float = 0.0):
    """Contact manifold between two bodies, or None if they are farther apart than margin."""
    dx, dy = B.x - A.x, B.y - A.y
    reach = A.bound + B.bound + margin
    if dx * dx + dy * dy > reach * reach:
        return None
    if A.local is not None and B.local is not None:
        return _poly_poly(A, B, margin)
    if A.local is not None:
        return _poly_circle(A, B, margin)
    if B.local is not None:
        m = _poly_circle(B, A, margin)
        return None if m is None else (-m[0], -m[1], m[2])
    return _circle_circle(A, B, margin)


def wall_contacts(B: Body, bounds, margin: float = 0.0):
    """Contacts of a body with the four rim walls: [(nx, ny, pts)], normals pointing into the table."""
    x0, y0, x1, y1 = bounds
    if B.x - B.bound > x0 + margin and B.x + B.bound < x1 - margin and \
            B.y - B.bound > y0 + margin and B.y + B.bound < y1 - margin:
        return []
    out = []
    for nx, ny, off in ((1.0, 0.0, x0), (0.0, 1.0, y0), (-1.0, 0.0, -x1), (0.0, -1.0, -y1)):
        if B.local is None:
            sep = nx * B.x + ny * B.y - off - B.radius
            pts = [(B.x - nx * B.radius, B.y - ny * B.radius, sep)] if sep <= margin else []
        else:
            pts = [(px, py, nx * px + ny * py - off) for px, py in B.verts]
            pts = [p for p in pts if p[2] <= margin]
        if pts:
            out.append((nx, ny, pts))
    return out
