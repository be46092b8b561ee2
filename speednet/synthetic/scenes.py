"""Scene parameters: what is in a synthetic clip, drawn at random from a seed.

A scene is a room seen by a camera: a floor, side walls, a ceiling at the top of the
frame, and a few objects of four kinds (bouncing balls, pendulums, sliding boxes,
springs) that occlude each other in the order listed. Every physical quantity is in
SI units; `pixels_per_metre` is the only link between metres and pixels.

Why the numbers look the way they do: each kind of object has a characteristic
size (±10%), so gravity is a fixed acceleration *in object sizes per second²*: the
cue a viewer uses to tell 1x from 2x. The camera distance (room height 0.6–6 m in
view, so pixels per metre spread 10x) and the launch speeds spread widely, so the
number of pixels that move per frame says little about the playback speed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from speednet.synthetic import physics

SCENE_TYPES = ("bounce", "pendulum", "slide", "spring")
VARIANTS = {"natural": ((0.0, 1.0),), "sped2x": ((0.0, 2.0),), "half2x": ((0.0, 1.0), (0.5, 2.0)), "slowmo": ((0.0, 0.5),)}
# Sizes chosen with probability ∝ 1/area²: most clips are small (the model trains at 64–112 px anyway).
DEFAULT_SIZES = ((256, 144), (320, 180), (320, 240), (480, 270), (640, 360))

# Characteristic sizes (m) per kind of object; each instance varies ±10% around them.
BALL_RADIUS_M = 0.12
BOB_RADIUS_M = 0.12
BOX_HALF_WIDTH_M, BOX_HALF_HEIGHT_M = 0.20, 0.15
SPRING_MASS_HALF_M = 0.12


@dataclass
class Look:
    """Surface appearance of an object: two colours mixed by a pattern that turns with the object."""

    pattern: str = "flat"
    colour_a: tuple[float, float, float] = (220.0, 60.0, 50.0)
    colour_b: tuple[float, float, float] = (250.0, 220.0, 80.0)
    pattern_scale: float = 0.5  # pattern period in object sizes
    shading: float = 0.0


@dataclass
class Ball:
    """A ball thrown under gravity, bouncing off the floor and walls, re-thrown when it comes to rest."""

    radius_m: float
    x0_m: float
    y0_m: float
    vx0_m_per_s: float = 0.0
    vy0_m_per_s: float = 0.0
    restitution: float = 0.75
    relaunch_velocities_m_per_s: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 3.0)])
    rest_s: float = 0.3
    look: Look = field(default_factory=Look)
    kind: str = "ball"


@dataclass
class Pendulum:
    """A bob on a rigid rod swinging from a pivot near the ceiling; period 2π√(L/g) for small swings."""

    pivot_x_m: float
    pivot_y_m: float
    length_m: float
    bob_radius_m: float
    amplitude_rad: float
    phase_s: float = 0.0
    rod_half_width_m: float = 0.008
    look: Look = field(default_factory=Look)
    kind: str = "pendulum"


@dataclass
class SlidingBox:
    """A box pushed along the floor, slowed by friction, bouncing off walls, pushed again once stopped."""

    half_width_m: float
    half_height_m: float
    x0_m: float
    v0_m_per_s: float
    friction_mu: float = 0.35
    restitution: float = 0.6
    push_velocities_m_per_s: list[float] = field(default_factory=lambda: [1.0])
    rest_s: float = 0.5
    look: Look = field(default_factory=Look)
    kind: str = "slide"


@dataclass
class Spring:
    """A box hanging from the ceiling on a spring; the static stretch d sets the period 2π√(d/g).

    At each kick time someone tops the swing back up to the next kick amplitude.
    """

    anchor_x_m: float
    anchor_y_m: float
    rest_length_m: float
    static_stretch_m: float
    mass_half_size_m: float
    x0_m: float = 0.0  # initial displacement from equilibrium (positive = up)
    v0_m_per_s: float = 0.0
    damping_ratio: float = 0.05
    kick_times_s: list[float] = field(default_factory=list)
    kick_amplitudes_m: list[float] = field(default_factory=list)
    coils: int = 8
    look: Look = field(default_factory=Look)
    kind: str = "spring"


SceneObject = Ball | Pendulum | SlidingBox | Spring
_OBJECT_TYPES = {"ball": Ball, "pendulum": Pendulum, "slide": SlidingBox, "spring": Spring}


@dataclass
class Camera:
    """Camera motion: a slow sinusoidal pan along the room and a handheld shake (both follow physics time)."""

    pan_range_m: float = 0.0
    pan_period_s: float = 10.0
    pan_phase_rad: float = 0.0
    shake_px: float = 0.0
    shake_hz: tuple[float, float, float] = (0.7, 1.3, 2.9)
    shake_phase_rad: tuple[float, float, float] = (0.0, 1.0, 2.0)


@dataclass
class Background:
    """A static backdrop the camera moves over: 'flat', 'gradient', 'noise' or 'photo', with optional defocus."""

    kind: str = "flat"
    colour_a: tuple[float, float, float] = (128.0, 128.0, 128.0)
    colour_b: tuple[float, float, float] = (128.0, 128.0, 128.0)
    floor_colour: tuple[float, float, float] = (128.0, 128.0, 128.0)
    scale_px: float = 20.0
    blur_px: float = 0.0
    seed: int = 0


@dataclass
class Lighting:
    """Slow brightness drift (clouds; follows physics time) plus per-frame flicker and sensor noise (do not)."""

    drift_amplitude: float = 0.0
    drift_hz: float = 0.2
    drift_phase_rad: float = 0.0
    flicker_amplitude: float = 0.0
    sensor_noise_sigma: float = 0.0


@dataclass
class SpeedSegment:
    """From `start_frame` on, each frame advances physics time by `speed` / fps (1 natural, 2 sped up, 0.5 slow motion)."""

    start_frame: int
    speed: float


@dataclass
class SceneParams:
    """Everything needed to render one clip, deterministically. Also the clip's sidecar."""

    width: int
    height: int
    fps: float
    n_frames: int
    room_height_m: float
    room_width_m: float
    floor_px: int
    objects: list[SceneObject]
    scene_type: str = "bounce"
    variant: str = "natural"
    segments: list[SpeedSegment] = field(default_factory=lambda: [SpeedSegment(0, 1.0)])
    camera: Camera = field(default_factory=Camera)
    background: Background = field(default_factory=Background)
    lighting: Lighting = field(default_factory=Lighting)
    g_m_per_s2: float = physics.G_M_PER_S2
    seed: int = 0
    index: int = 0

    @property
    def floor_row_px(self) -> float:
        """Frame row of the floor line (y = 0 m) with the camera at rest."""
        return float(self.height - self.floor_px)

    @property
    def pixels_per_metre(self) -> float:
        return self.floor_row_px / self.room_height_m

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def frame_times_s(self) -> np.ndarray:
        """Physics time shown by each frame: steps of speed/fps, per the speed segments."""
        speeds = np.empty(self.n_frames)
        for seg in sorted(self.segments, key=lambda s: s.start_frame):
            speeds[seg.start_frame:] = seg.speed
        return np.concatenate([[0.0], np.cumsum(speeds[:-1] / self.fps)])

    def to_dict(self) -> dict:
        """JSON-ready dict of every parameter, plus derived facts a reader would otherwise recompute."""
        d = dataclasses.asdict(self)
        d.update(pixels_per_metre=self.pixels_per_metre, duration_s=self.duration_s, floor_row_px=self.floor_row_px)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SceneParams":
        """Inverse of `to_dict` (derived keys are ignored), so a sidecar re-renders its clip."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        objects = []
        for o in d["objects"]:
            o = dict(o, look=Look(**{**o["look"], "colour_a": tuple(o["look"]["colour_a"]),
                                     "colour_b": tuple(o["look"]["colour_b"])}))
            if o["kind"] == "ball":
                o["relaunch_velocities_m_per_s"] = [tuple(v) for v in o["relaunch_velocities_m_per_s"]]
            objects.append(_OBJECT_TYPES[o["kind"]](**o))
        return cls(**{**d, "objects": objects,
                      "segments": [SpeedSegment(**s) for s in d["segments"]],
                      "camera": Camera(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["camera"].items()}),
                      "background": Background(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["background"].items()}),
                      "lighting": Lighting(**d["lighting"])})


# ----------------------------------------------------------------------------- object motion

def object_positions_m(obj: SceneObject, scene: SceneParams, t_seconds: np.ndarray) -> dict[str, np.ndarray]:
    """Where an object is at the given physics times: centre x, y (m), spin angle, and kind-specific extras."""
    g = scene.g_m_per_s2
    t_end = float(np.max(t_seconds)) + 1.0
    if isinstance(obj, Ball):
        track = physics.bouncing_ball_track(
            x0_m=obj.x0_m, y0_m=obj.y0_m, vx0_m_per_s=obj.vx0_m_per_s, vy0_m_per_s=obj.vy0_m_per_s,
            radius_m=obj.radius_m, restitution=obj.restitution, x_min_m=0.0, x_max_m=scene.room_width_m,
            relaunch_velocities_m_per_s=obj.relaunch_velocities_m_per_s, rest_s=obj.rest_s, t_end_s=t_end, g_m_per_s2=g)
        x, y, angle = track.at(t_seconds)
        return {"x_m": x, "y_m": y, "angle_rad": angle}
    if isinstance(obj, SlidingBox):
        track = physics.sliding_box_track(
            x0_m=obj.x0_m, v0_m_per_s=obj.v0_m_per_s, half_width_m=obj.half_width_m, half_height_m=obj.half_height_m,
            friction_mu=obj.friction_mu, restitution=obj.restitution, x_min_m=0.0, x_max_m=scene.room_width_m,
            push_velocities_m_per_s=obj.push_velocities_m_per_s, rest_s=obj.rest_s, t_end_s=t_end, g_m_per_s2=g)
        x, y, _ = track.at(t_seconds)
        return {"x_m": x, "y_m": y, "angle_rad": np.zeros_like(x)}
    if isinstance(obj, Pendulum):
        theta = physics.pendulum_angle_rad(t_seconds, length_m=obj.length_m, amplitude_rad=obj.amplitude_rad,
                                           phase_s=obj.phase_s, g_m_per_s2=g)
        return {"x_m": obj.pivot_x_m + obj.length_m * np.sin(theta),
                "y_m": obj.pivot_y_m - obj.length_m * np.cos(theta), "angle_rad": theta}
    if isinstance(obj, Spring):
        offset = physics.damped_spring_offset_m(
            t_seconds, static_stretch_m=obj.static_stretch_m, damping_ratio=obj.damping_ratio, x0_m=obj.x0_m,
            v0_m_per_s=obj.v0_m_per_s, kick_times_s=obj.kick_times_s, kick_amplitudes_m=obj.kick_amplitudes_m,
            g_m_per_s2=g)
        y_eq = obj.anchor_y_m - obj.rest_length_m - obj.static_stretch_m - obj.mass_half_size_m
        return {"x_m": np.full_like(offset, obj.anchor_x_m), "y_m": y_eq + offset, "angle_rad": np.zeros_like(offset)}
    raise TypeError(f"unknown scene object {obj!r}")


# ----------------------------------------------------------------------------- sampling

def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _within(rng: np.random.Generator, interval: tuple[float, float], margin: float) -> float:
    """A position in `interval` at least `margin` from its ends (its middle if it is too narrow): hung objects stay in view."""
    lo, hi = interval[0] + margin, interval[1] - margin
    return float(rng.uniform(lo, hi)) if lo < hi else float(sum(interval) / 2)


def _colour(rng: np.random.Generator, lo: float = 40, hi: float = 250) -> tuple[float, float, float]:
    """A saturated colour: one channel high, one low, one anywhere, in random order."""
    channels = [rng.uniform(0.75, 1.0) * hi, rng.uniform(lo, hi), lo + rng.uniform(0.0, 0.3) * (hi - lo)]
    rng.shuffle(channels)
    return tuple(round(float(c), 1) for c in channels)


def _look(rng: np.random.Generator, shading: bool) -> Look:
    return Look(pattern=str(rng.choice(("flat", "stripes", "checker", "spots", "ring"))),
                colour_a=_colour(rng), colour_b=_colour(rng), pattern_scale=float(rng.uniform(0.4, 1.2)),
                shading=float(rng.uniform(0.2, 0.5)) if shading else 0.0)


def _ball(rng: np.random.Generator, room_w: float, room_h: float, g: float, visible: tuple[float, float]) -> Ball:
    r = BALL_RADIUS_M * rng.uniform(0.9, 1.1)
    sweep = np.sqrt(g * room_h)  # speeds that cross the room in about one flight

    def throw() -> tuple[float, float]:
        rise_m = _log_uniform(rng, 0.05, 0.95) * (room_h - 2 * r)
        return (float(rng.choice((-1, 1)) * _log_uniform(rng, 0.03, 0.8) * sweep), float(np.sqrt(2 * g * rise_m)))

    y0 = rng.uniform(r, 0.8 * room_h)
    vy_max = np.sqrt(2 * g * max(room_h - r - y0, 0.0))
    return Ball(radius_m=r, x0_m=rng.uniform(r, room_w - r), y0_m=y0,
                vx0_m_per_s=throw()[0], vy0_m_per_s=float(rng.uniform(-1, 0.9) * vy_max),
                restitution=float(rng.uniform(0.6, 0.85)), relaunch_velocities_m_per_s=[throw() for _ in range(8)],
                rest_s=float(rng.uniform(0.1, 2.0)), look=_look(rng, shading=True))


def _pendulum(rng: np.random.Generator, room_w: float, room_h: float, g: float, visible: tuple[float, float]) -> Pendulum:
    bob = BOB_RADIUS_M * rng.uniform(0.9, 1.1)
    pivot_y = room_h * rng.uniform(0.9, 0.97)
    length = rng.uniform(0.3, 0.85) * (pivot_y - bob - 0.03 * room_h)
    amplitude = _log_uniform(rng, 0.05, 1.1)
    reach = length * np.sin(amplitude) + bob
    pivot_x = _within(rng, visible, reach)
    return Pendulum(pivot_x_m=float(pivot_x), pivot_y_m=float(pivot_y), length_m=float(length), bob_radius_m=bob,
                    amplitude_rad=float(amplitude), phase_s=float(rng.uniform(0, physics.pendulum_period_s(length, amplitude, g))),
                    look=_look(rng, shading=True))


def _sliding_box(rng: np.random.Generator, room_w: float, room_h: float, g: float, visible: tuple[float, float]) -> SlidingBox:
    hw, hh = BOX_HALF_WIDTH_M * rng.uniform(0.9, 1.1), BOX_HALF_HEIGHT_M * rng.uniform(0.9, 1.1)
    mu = float(rng.uniform(0.25, 0.45))

    def push() -> float:
        # Enough speed to glide between 3% and 100% of the room before friction stops it.
        return float(rng.choice((-1, 1)) * np.sqrt(2 * mu * g * _log_uniform(rng, 0.03, 1.0) * room_w))

    return SlidingBox(half_width_m=hw, half_height_m=hh, x0_m=float(rng.uniform(hw, room_w - hw)), v0_m_per_s=push(),
                      friction_mu=mu, restitution=float(rng.uniform(0.4, 0.8)), push_velocities_m_per_s=[push() for _ in range(8)],
                      rest_s=float(rng.uniform(0.2, 2.0)), look=_look(rng, shading=False))


def _spring(rng: np.random.Generator, room_w: float, room_h: float, g: float, visible: tuple[float, float],
            duration_s: float) -> Spring:
    half = SPRING_MASS_HALF_M * rng.uniform(0.9, 1.1)
    anchor_y = room_h * rng.uniform(0.9, 0.97)
    drop = anchor_y - 2 * half - 0.05 * room_h  # room for coil + stretch + swing below the anchor
    stretch, rest = rng.uniform(0.15, 0.4) * drop, rng.uniform(0.15, 0.3) * drop
    max_amp = min(drop - rest - stretch, 0.9 * (rest + stretch))
    kick_times = np.cumsum(rng.uniform(1.5, 4.0, size=int(duration_s / 1.5) + 2)).tolist()
    return Spring(anchor_x_m=_within(rng, visible, 0.6 * half + 0.02 * room_h), anchor_y_m=float(anchor_y),
                  rest_length_m=float(rest), static_stretch_m=float(stretch), mass_half_size_m=half,
                  x0_m=float(rng.choice((-1, 1)) * _log_uniform(rng, 0.05, 0.9) * max_amp), damping_ratio=float(rng.uniform(0.02, 0.1)),
                  kick_times_s=[float(t) for t in kick_times],
                  kick_amplitudes_m=[_log_uniform(rng, 0.05, 0.95) * max_amp for _ in kick_times],
                  coils=int(rng.integers(5, 11)), look=_look(rng, shading=False))


def sample_scene(
    rng_or_seed: np.random.Generator | int | Sequence[int],
    *,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    duration_s: float | tuple[float, float] = (5.0, 10.0),
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    fps_choices: Sequence[float] = (24, 25, 30),
    scene_type: str | None = None,
    variant: str = "natural",
) -> SceneParams:
    """Draw a random scene. Same seed, same scene; anything passed explicitly overrides the draw.

    Scale is drawn per clip (room height 0.6–6 m in view, log-uniform) and launch speeds per
    object, so pixel speed varies far more between clips than between 1x and 2x.
    `variant` picks the speed segments: 'natural', 'sped2x', 'half2x' or 'slowmo'.
    """
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    if width is None or height is None:
        weights = np.array([1.0 / (w * h) ** 2 for w, h in sizes])
        width, height = sizes[rng.choice(len(sizes), p=weights / weights.sum())]
    fps = float(fps if fps is not None else rng.choice(fps_choices))
    seconds = float(rng.uniform(*duration_s)) if isinstance(duration_s, tuple) else float(duration_s)
    n_frames = max(int(round(seconds * fps)), 2)
    g = physics.G_M_PER_S2

    room_h = _log_uniform(rng, 0.6, 6.0)
    floor_px = int(round(rng.uniform(0.06, 0.15) * height))
    ppm = (height - floor_px) / room_h
    view_w = width / ppm
    pan_range = _log_uniform(rng, 0.05, 0.6) * view_w if rng.random() < 0.35 else 0.0
    camera = Camera(pan_range_m=pan_range, pan_period_s=_log_uniform(rng, 4.0, 40.0), pan_phase_rad=float(rng.uniform(0, 2 * np.pi)),
                    shake_px=_log_uniform(rng, 0.001, 0.015) * height if rng.random() < 0.3 else 0.0,
                    shake_hz=tuple(_log_uniform(rng, 0.3, 3.0) for _ in range(3)),
                    shake_phase_rad=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 3)))
    background = Background(kind=str(rng.choice(("gradient", "noise", "photo"))), colour_a=_colour(rng, 30, 220),
                            colour_b=_colour(rng, 30, 220), floor_colour=_colour(rng, 30, 160),
                            scale_px=float(rng.uniform(0.05, 0.3) * height),
                            blur_px=float(rng.uniform(0.002, 0.008) * height) if rng.random() < 0.3 else 0.0,
                            seed=int(rng.integers(2**31)))
    lighting = Lighting(drift_amplitude=float(rng.uniform(0.02, 0.1)) if rng.random() < 0.4 else 0.0,
                        drift_hz=float(rng.uniform(0.1, 0.5)), drift_phase_rad=float(rng.uniform(0, 2 * np.pi)),
                        flicker_amplitude=float(rng.uniform(0.005, 0.03)) if rng.random() < 0.3 else 0.0,
                        sensor_noise_sigma=float(rng.uniform(0.5, 2.5)) if rng.random() < 0.5 else 0.0)

    scene_type = scene_type or str(rng.choice(SCENE_TYPES))
    others = [k for k in SCENE_TYPES if k != scene_type]
    kinds = [scene_type] * int(rng.integers(1, 5)) + [str(rng.choice(others)) for _ in range(int(rng.integers(0, 2)))]
    room_w = view_w + pan_range
    physics_s = seconds * 2.0 + 2.0  # long enough for any speed variant
    makers = {"bounce": _ball, "pendulum": _pendulum, "slide": _sliding_box,
              "spring": lambda *args: _spring(*args, duration_s=physics_s)}
    visible = (pan_range, view_w)  # the strip of the room that stays in view however the camera pans
    objects = [makers[k](rng, room_w, room_h, g, visible) for k in kinds]
    order = rng.permutation(len(objects))  # drawing order = depth order: later objects occlude earlier ones

    segments = [SpeedSegment(int(round(frac * n_frames)), speed) for frac, speed in VARIANTS[variant]]
    return SceneParams(width=int(width), height=int(height), fps=fps, n_frames=n_frames, room_height_m=room_h,
                       room_width_m=room_w, floor_px=floor_px, objects=[objects[i] for i in order],
                       scene_type=scene_type, variant=variant, segments=segments, camera=camera,
                       background=background, lighting=lighting, g_m_per_s2=g)
