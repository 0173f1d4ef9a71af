"""Drawing for ``training.synth.face_synth``: an ``Identity`` (the parameters that make a
person) painted as soft shapes evaluated in the face's own frame.

The face frame has its origin at the head centre, unit = half the head width, y down. A
feature is placed by a 3-D point on a unit head (x, y, z toward the camera) projected by the
yaw; ``Canvas`` maps the frame onto the image (roll, scale, position) and paints
anti-aliased shapes over the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Rgb = tuple[float, float, float]


@dataclass(frozen=True)
class Identity:
    """The parameters that make a person (all drawn once per identity)."""

    skin: Rgb
    hair: Rgb
    iris: Rgb
    lips: Rgb
    aspect: float  # head half-height / half-width
    jaw: float  # lower-face width factor
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_w: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    mouth_gap: float
    mouth_w: float
    lip_h: float
    hairline: float
    hair_sweep: float
    hair_long: bool
    ear: float
    beard: float  # 0: none


def palette_colour(palette: list[Rgb], rng: np.random.Generator, spread: float) -> Rgb:
    base = np.asarray(palette[int(rng.integers(len(palette)))])
    r, g, b = np.clip(base + rng.normal(0, spread, 3), 0.02, 1.0)
    return (float(r), float(g), float(b))


class Canvas:
    def __init__(
        self, pixels: np.ndarray, centre: np.ndarray, scale: float, roll: float, yaw: float
    ) -> None:
        self.pixels: np.ndarray = np.array(pixels, dtype=np.float32)
        size = self.pixels.shape[0]
        self.centre, self.scale, self.yaw = np.asarray(centre, float), float(scale), yaw
        self.cos, self.sin = math.cos(roll), math.sin(roll)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        dx, dy = (xs - self.centre[0]) / scale, (ys - self.centre[1]) / scale
        self.u = self.cos * dx + self.sin * dy
        self.v = -self.sin * dx + self.cos * dy
        self.aa = 1.0 / scale  # one output pixel in face units
        self.light: np.ndarray = np.ones_like(self.u)[..., None]

    def set_light(self, angle: float, strength: float, ambient: float) -> None:
        ramp = (self.u * math.cos(angle) + self.v * math.sin(angle)) / 1.5
        self.light = (ambient * (1.0 + strength * np.clip(ramp, -1, 1)))[..., None]

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        """A point of the 3-D head in the (yawed) face frame."""
        return x * math.cos(self.yaw) + z * math.sin(self.yaw), y

    def foreshorten(self, x: float) -> float:
        """Apparent width factor of a small feature at head position ``x`` under the yaw."""
        angle = math.asin(max(-0.95, min(0.95, x)))
        return max(0.3, math.cos(angle + self.yaw) / math.cos(angle))

    def to_image(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64) * self.scale
        x = self.cos * p[:, 0] - self.sin * p[:, 1]
        y = self.sin * p[:, 0] + self.cos * p[:, 1]
        return np.stack([x, y], axis=1) + self.centre

    def ellipse(
        self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, v: Any = None
    ) -> np.ndarray:
        """Alpha (0..1, anti-aliased) of an ellipse; ``v`` replaces the frame's y (curves)."""
        du, dv = self.u - cx, (self.v if v is None else v) - cy
        c, s = math.cos(angle), math.sin(angle)
        q = ((du * c + dv * s) / ax) ** 2 + ((-du * s + dv * c) / ay) ** 2
        dist = (np.sqrt(q) - 1.0) * min(ax, ay)
        return np.clip(0.5 - dist / self.aa, 0.0, 1.0)

    def step(self, signed: np.ndarray) -> np.ndarray:
        """Alpha of the region ``signed < 0`` (in face units), anti-aliased."""
        return np.clip(0.5 - signed / self.aa, 0.0, 1.0)

    def paint(self, alpha: np.ndarray, colour: Any, lit: bool = True, opacity: float = 1.0) -> None:
        a = (alpha * opacity)[..., None]
        col: np.ndarray = np.asarray(colour, dtype=np.float32)
        if lit:
            col = col * self.light
        self.pixels = self.pixels * (1 - a) + col * a


def _scaled(colour: Rgb, f: float) -> np.ndarray:
    return np.asarray(colour, dtype=np.float32) * f


def draw_face(
    c: Canvas, p: Identity, expr: dict[str, Any], light: tuple[float, float, float]
) -> np.ndarray:
    """Paint ``p`` with expression ``expr``; returns the 5 landmarks in image pixels."""
    c.set_light(*light)
    b = p.aspect
    u, v = c.u, c.v
    hair_tex = (0.85 + 0.15 * np.sin(45 * u + 9 * v))[..., None] * np.asarray(p.hair)
    if p.hair_long:
        back = np.maximum(c.ellipse(0, -0.1 * b, 1.22, b * 1.05), c.ellipse(0, 0.35 * b, 1.2, b))
        c.paint(back, hair_tex * 0.8)
    c.paint(c.ellipse(0, b * 0.9 + 0.5, 0.48 * p.jaw + 0.05, 0.9), _scaled(p.skin, 0.78))
    c.paint(c.ellipse(0, b + 1.45, 2.4, 0.85), _scaled(p.hair[::-1], 0.9) * 0.6 + 0.2)
    for side in (-1, 1):
        ex, _ = c.project(side * 1.0, 0, -0.15)
        ear_w = p.ear * 0.55 * max(0.2, c.foreshorten(side * 0.97) * 2)
        c.paint(c.ellipse(ex, p.eye_y + 0.15, ear_w, p.ear), _scaled(p.skin, 0.9))
        c.paint(c.ellipse(ex, p.eye_y + 0.16, ear_w * 0.5, p.ear * 0.6), _scaled(p.skin, 0.7))
    half_w = np.where(v > 0, 1.0 - (1.0 - p.jaw) * np.clip(v / b, 0, 1) ** 1.5, 1.0)
    q = (u / half_w) ** 2 + (v / b) ** 2
    head = c.step((np.sqrt(q) - 1.0) * np.minimum(half_w, b))
    nose_u, _ = c.project(0, 0, 1.0)
    shade = 1.0 - 0.28 * np.clip(((u - nose_u * 0.5) / half_w) ** 2 + (v / b) ** 2, 0, 1) ** 1.5
    c.paint(head, shade[..., None] * np.asarray(p.skin))

    eye_v, tip_v = p.eye_y, p.eye_y + p.nose_len
    mouth_v = tip_v + p.mouth_gap
    if p.beard > 0:
        region = head * c.step(tip_v + 0.08 - v)
        c.paint(region, hair_tex * 0.85, opacity=p.beard)
    hairline = b * p.hairline + 0.45 * u**2 + p.hair_sweep * u
    top = c.ellipse(0, -0.04, 1.1, b * 1.08) * c.step(v - hairline)
    c.paint(top, hair_tex)

    marks: list[tuple[float, float]] = []
    for side in (-1, 1):
        x = side * p.eye_dx
        eu, _ = c.project(x, eye_v, 0.85 * math.sqrt(1 - x * x))
        fs = c.foreshorten(x)
        ew, eh = p.eye_w * fs, p.eye_h * expr["eye_open"]
        c.paint(
            c.ellipse(eu, eye_v - 0.02, ew * 1.5, p.eye_h * 2.0), _scaled(p.skin, 0.72), True, 0.35
        )
        white = c.ellipse(eu, eye_v, ew, max(eh, 0.012))
        c.paint(white, (0.92, 0.9, 0.87))
        gx, gy = expr["gaze"]
        iu, iv, ri = eu + gx * ew * 0.4, eye_v + gy * eh * 0.3, p.eye_w * 0.45
        c.paint(c.ellipse(iu, iv, ri * fs, ri) * white, p.iris)
        c.paint(c.ellipse(iu, iv, ri * 0.45 * fs, ri * 0.45) * white, (0.03, 0.02, 0.02))
        c.paint(c.ellipse(iu + ri * 0.3, iv - ri * 0.3, ri * 0.18, ri * 0.18) * white, (1, 1, 1))
        lid = c.ellipse(eu, eye_v, ew * 1.1, max(eh, 0.012) * 1.25 + 0.012) * (1 - white)
        c.paint(lid * c.step(v - eye_v - 0.01), (0.12, 0.08, 0.07), opacity=0.85)
        bu, _ = c.project(x, 0, 0.95 * math.sqrt(1 - x * x))
        bv = eye_v - p.brow_gap - expr["brow_raise"]
        brow = c.ellipse(
            bu, bv, p.brow_w * fs, 0.032 + 0.01 * (p.hair[0] < 0.3), side * p.brow_tilt
        )
        c.paint(brow, _scaled(p.hair, 0.65))
        marks.append((eu, eye_v))

    tip_u, _ = c.project(0, tip_v, 1.25)
    fs = c.foreshorten(0.0)
    for side in (-1, 1):  # nose sides, shaded by the light
        su = (nose_u + tip_u) / 2 + side * p.nose_w * 0.7 * fs
        dark = 0.3 + 0.25 * side * math.cos(light[0]) * min(1.0, light[1] * 3)
        ridge = c.ellipse(su, (eye_v + tip_v) / 2 + 0.04, 0.045, p.nose_len * 0.45)
        c.paint(ridge, _scaled(p.skin, 0.72), opacity=float(np.clip(dark, 0.05, 0.6)))
    c.paint(
        c.ellipse(tip_u, tip_v + 0.03, p.nose_w * 1.1 * fs, 0.06), _scaled(p.skin, 0.82), True, 0.6
    )
    for side in (-1, 1):
        nostril = c.ellipse(tip_u + side * p.nose_w * 0.55 * fs, tip_v + 0.04, 0.035, 0.02)
        c.paint(nostril, _scaled(p.skin, 0.35), opacity=0.9)
    c.paint(c.ellipse(tip_u, tip_v - 0.02, 0.05, 0.04), _scaled(p.skin, 1.12), opacity=0.5)
    marks.append((tip_u, tip_v))

    mw = p.mouth_w * (1 + 0.12 * max(expr["smile"], 0.0))
    mu, _ = c.project(0, mouth_v, 1.0)
    mfs = c.foreshorten(0.0)
    smile, opening = expr["smile"], expr["open"] * 0.12
    curve = smile * 0.05 * (1 - np.clip(((u - mu) / (mw * mfs)) ** 2, 0, 1)) - smile * 0.05
    mv = v - curve  # the mouth's own (curved) vertical coordinate
    c.paint(c.ellipse(mu, mouth_v - p.lip_h * 0.6 - opening / 2, mw * mfs, p.lip_h, v=mv), p.lips)
    lower = c.ellipse(
        mu, mouth_v + p.lip_h * 0.7 + opening / 2, mw * 0.85 * mfs, p.lip_h * 1.2, v=mv
    )
    c.paint(lower, _scaled(p.lips, 1.05))
    if opening > 0.01:
        inside = c.ellipse(mu, mouth_v, mw * 0.88 * mfs, opening / 2 + 0.01, v=mv)
        c.paint(inside, (0.2, 0.06, 0.06))
        teeth = inside * c.step(mv - mouth_v + opening * 0.15)
        c.paint(teeth, (0.88, 0.86, 0.8))
    c.paint(c.ellipse(mu, mouth_v, mw * mfs, 0.011 + opening * 0.1, v=mv), _scaled(p.lips, 0.4))
    corner_v = mouth_v - smile * 0.05
    marks += [(mu - mw * mfs, corner_v), (mu + mw * mfs, corner_v)]
    return c.to_image(np.asarray(marks))
