"""Trajectories of simple mechanical systems, as pure functions of physics time.

Everything is in SI units (metres, seconds, radians) in a room whose floor is
y = 0 and whose walls are x = x_min and x = x_max. Each function takes an array
of times and returns positions, so a clip can be rendered at any speed: the
renderer only decides *which* physics times it samples (1/fps apart at natural
speed, 2/fps at 2x).

Motion with events (bounces, stops, re-launches) is solved event by event in
closed form rather than by numerical integration, so positions are exact and a
test can compare them with ½gt² to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ellipj, ellipk

G_M_PER_S2 = 9.81


@dataclass(frozen=True)
class Track:
    """Piecewise-polynomial motion: segment k starts at t_start_s[k] with position p0, velocity v0, acceleration a.

    Also carries a spin angle (rad) that grows linearly within a segment, for textures
    that turn as a ball rolls through the air.
    """

    t_start_s: np.ndarray  # (K,)
    x0_m: np.ndarray
    y0_m: np.ndarray
    vx_m_per_s: np.ndarray
    vy_m_per_s: np.ndarray
    ax_m_per_s2: np.ndarray
    ay_m_per_s2: np.ndarray
    angle0_rad: np.ndarray
    spin_rad_per_s: np.ndarray

    def at(self, t_seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions x, y (m) and spin angle (rad) at the given physics times."""
        t_seconds = np.asarray(t_seconds, dtype=np.float64)
        k = np.clip(np.searchsorted(self.t_start_s, t_seconds, side="right") - 1, 0, len(self.t_start_s) - 1)
        dt = t_seconds - self.t_start_s[k]
        x = self.x0_m[k] + self.vx_m_per_s[k] * dt + 0.5 * self.ax_m_per_s2[k] * dt**2
        y = self.y0_m[k] + self.vy_m_per_s[k] * dt + 0.5 * self.ay_m_per_s2[k] * dt**2
        angle = self.angle0_rad[k] + self.spin_rad_per_s[k] * dt
        return x, y, angle


def _track(rows: list[tuple[float, ...]]) -> Track:
    columns = np.array(rows, dtype=np.float64).T
    return Track(*columns)


def _time_to_height(y0: float, vy: float, g: float, height: float) -> float:
    """First τ > 0 at which y0 + vy τ − ½ g τ² falls to `height` (the descending root)."""
    disc = vy * vy + 2.0 * g * (y0 - height)
    return (vy + np.sqrt(max(disc, 0.0))) / g


def _time_to_wall(x0: float, vx: float, x_min: float, x_max: float) -> float:
    if vx > 1e-12:
        return max((x_max - x0) / vx, 0.0)
    if vx < -1e-12:
        return max((x_min - x0) / vx, 0.0)
    return np.inf


def bouncing_ball_track(
    *,
    x0_m: float,
    y0_m: float,
    vx0_m_per_s: float,
    vy0_m_per_s: float,
    radius_m: float,
    restitution: float,
    x_min_m: float,
    x_max_m: float,
    relaunch_velocities_m_per_s: list[tuple[float, float]],
    rest_s: float,
    t_end_s: float,
    g_m_per_s2: float = G_M_PER_S2,
) -> Track:
    """A ball thrown under gravity that bounces off the floor and the side walls.

    Each floor bounce keeps `restitution` of the vertical speed; once a bounce would
    rise less than one radius the ball rests for `rest_s` and is thrown again with the
    next velocity from `relaunch_velocities_m_per_s` (cycled), so the motion stays
    lively for the whole clip instead of dying out.
    """
    lo, hi = x_min_m + radius_m, x_max_m - radius_m
    x, y, vx, vy, t, angle = x0_m, max(y0_m, radius_m), vx0_m_per_s, vy0_m_per_s, 0.0, 0.0
    g = g_m_per_s2
    kick = 0
    rows: list[tuple[float, ...]] = []
    while t < t_end_s and len(rows) < 10_000:
        # Spin as if the ball had rolled off the last surface: visible, and consistent with vx.
        spin = -vx / radius_m
        tau_floor = _time_to_height(y, vy, g, radius_m)
        tau_wall = _time_to_wall(x, vx, lo, hi)
        tau = min(tau_floor, tau_wall)
        rows.append((t, x, y, vx, vy, 0.0, -g, angle, spin))
        x, y = x + vx * tau, y + vy * tau - 0.5 * g * tau * tau
        vy -= g * tau
        angle += spin * tau
        t += tau
        if tau_wall <= tau_floor:
            x = lo if vx < 0 else hi
            vx = -restitution * vx
            continue
        y = radius_m
        vy = -restitution * vy
        vx *= 0.9  # the floor grips a little at each bounce
        if vy * vy < 2.0 * g * radius_m:
            rows.append((t, x, y, 0.0, 0.0, 0.0, 0.0, angle, 0.0))
            t += rest_s
            vx, vy = relaunch_velocities_m_per_s[kick % len(relaunch_velocities_m_per_s)]
            kick += 1
    return _track(rows)


def sliding_box_track(
    *,
    x0_m: float,
    v0_m_per_s: float,
    half_width_m: float,
    half_height_m: float,
    friction_mu: float,
    restitution: float,
    x_min_m: float,
    x_max_m: float,
    push_velocities_m_per_s: list[float],
    rest_s: float,
    t_end_s: float,
    g_m_per_s2: float = G_M_PER_S2,
) -> Track:
    """A box sliding on the floor, slowed by Coulomb friction (deceleration μg), bouncing off the walls.

    When it stops it rests for `rest_s` and is pushed again with the next of
    `push_velocities_m_per_s` (cycled). The returned y is the box centre (on the floor).
    """
    lo, hi = x_min_m + half_width_m, x_max_m - half_width_m
    decel = friction_mu * g_m_per_s2
    x, v, t, push = x0_m, v0_m_per_s, 0.0, 0
    rows: list[tuple[float, ...]] = []
    while t < t_end_s and len(rows) < 10_000:
        if abs(v) < 1e-9:
            rows.append((t, x, half_height_m, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
            t += rest_s
            v = push_velocities_m_per_s[push % len(push_velocities_m_per_s)]
            push += 1
            continue
        a = -np.sign(v) * decel
        tau_stop = abs(v) / decel
        wall = hi if v > 0 else lo
        # Solve x + v τ + ½ a τ² = wall for the first positive τ before stopping.
        disc = v * v + 2.0 * a * (wall - x)
        tau_wall = (-v + np.sign(v) * np.sqrt(disc)) / a if disc >= 0 else np.inf
        if not (0 <= tau_wall < tau_stop):
            tau_wall = np.inf
        tau = min(tau_stop, tau_wall)
        rows.append((t, x, half_height_m, v, 0.0, a, 0.0, 0.0, 0.0))
        x = x + v * tau + 0.5 * a * tau * tau
        v = v + a * tau
        t += tau
        if tau_wall < tau_stop:
            x, v = wall, -restitution * v
        else:
            v = 0.0
    return _track(rows)


def pendulum_angle_rad(t_seconds: np.ndarray, *, length_m: float, amplitude_rad: float, phase_s: float = 0.0,
                       g_m_per_s2: float = G_M_PER_S2) -> np.ndarray:
    """Exact angle of an undamped rigid pendulum released from rest at `amplitude_rad` at t = −phase_s.

    Uses the closed form θ(t) = 2 arcsin(k·sn(K − ω₀t, k²)), k = sin(θ₀/2), so large
    swings have their true (longer) period rather than the small-angle 2π√(L/g).
    """
    omega0 = np.sqrt(g_m_per_s2 / length_m)
    k = np.sin(amplitude_rad / 2.0)
    m = k * k
    sn, _, _, _ = ellipj(ellipk(m) - omega0 * (np.asarray(t_seconds, dtype=np.float64) + phase_s), m)
    return 2.0 * np.arcsin(np.clip(k * sn, -1.0, 1.0))


def pendulum_period_s(length_m: float, amplitude_rad: float = 0.0, g_m_per_s2: float = G_M_PER_S2) -> float:
    """Period of a rigid pendulum: 4K(sin²(θ₀/2))/ω₀, which is 2π√(L/g) for small swings."""
    return float(4.0 * ellipk(np.sin(amplitude_rad / 2.0) ** 2) / np.sqrt(g_m_per_s2 / length_m))


def damped_spring_offset_m(
    t_seconds: np.ndarray,
    *,
    static_stretch_m: float,
    damping_ratio: float,
    x0_m: float,
    v0_m_per_s: float,
    kick_times_s: list[float],
    kick_amplitudes_m: list[float],
    g_m_per_s2: float = G_M_PER_S2,
) -> np.ndarray:
    """Displacement from equilibrium (m, up positive) of a mass hanging on a spring, re-excited by pushes.

    A hanging mass stretches its spring by d = mg/k, so ω = √(g/d): the static stretch
    seen in the picture sets the period, exactly as a pendulum's length does. Light
    damping decays the swing; at each kick time a push along the motion tops the swing
    back up to that kick's amplitude (a push never slows it, so amplitudes stay bounded).
    """
    omega = np.sqrt(g_m_per_s2 / static_stretch_m)
    zeta = damping_ratio
    omega_d = omega * np.sqrt(1.0 - zeta * zeta)
    t_seconds = np.asarray(t_seconds, dtype=np.float64)
    starts = [0.0] + [float(k) for k in kick_times_s]
    out = np.empty_like(t_seconds)
    x, v = x0_m, v0_m_per_s

    def state(dt: np.ndarray | float, x: float, v: float):
        decay = np.exp(-zeta * omega * dt)
        c, s = np.cos(omega_d * dt), np.sin(omega_d * dt)
        b = (v + zeta * omega * x) / omega_d
        pos = decay * (x * c + b * s)
        vel = decay * (-zeta * omega * (x * c + b * s) + (-x * omega_d * s + b * omega_d * c))
        return pos, vel

    for i, t0 in enumerate(starts):
        t1 = starts[i + 1] if i + 1 < len(starts) else np.inf
        mask = (t_seconds >= t0) & (t_seconds < t1) if i else (t_seconds < t1)
        out[mask] = state(t_seconds[mask] - t0, x, v)[0]
        if np.isfinite(t1):
            x, v = state(t1 - t0, x, v)
            amplitude = kick_amplitudes_m[i % len(kick_amplitudes_m)]
            if amplitude > abs(x):
                v = max(abs(v), omega * np.sqrt(amplitude**2 - x * x)) * (1.0 if v >= 0 else -1.0)
    return out
