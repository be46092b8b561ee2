"""Adaptive speedup (the paper's "optimal speedup"): a curve S*(t) that follows V(t).

S* = argmin_S  E_speed + β·E_rate + α·E_smooth, all quadratic, over the N source frames:

    E_speed  = Σ_t (S_t − V_t)²              follow the speediness (V clipped to [1, s_max]:
                                             V = 0, "already sped up", asks for 1x)
    E_rate   = N·(mean S − R_o)²             match the requested overall speedup
    E_smooth = fps²·Σ_t (S_{t+1} − S_t)²     i.e. ∫ (dS/dt)² in seconds, so α is in s²
                                             and √α is the smoothing time scale

Setting the gradient to zero gives (I + λDᵀD + (β/N)·11ᵀ) S = V + β·R_o·1 with λ = α·fps²
and D the first difference. A = I + λDᵀD is a sparse tridiagonal system with A·1 = 1, so
Sherman–Morrison collapses the rank-one rate term exactly:

    S = A⁻¹V + β/(1+β)·(R_o − mean V)·1

one sparse factorisation serves every ρ (V changes with ρ, A does not).

S ≥ 1 (never slow down) and S ≤ s_max are enforced by clipping. The output lasts
Σ_t 1/(fps·S_t), so what must equal R_o is the *harmonic* mean of S, which neither the
quadratic rate term nor clipping preserves. Hence two steps, as the paper's "ρ searched
over 0.1…0.9 to meet R_o": pick the ρ whose clipped curve comes closest to R_o, then move
that curve's constant (the only thing the rate term moves anyway) by bisection until the
clipped curve meets duration / R_o exactly. The final curve is therefore clip(A⁻¹V_ρ + c)
with the exact c: β acts through the choice of ρ (a large β lets every ρ reach R_o through
the constant, a small one favours the ρ whose V itself has the requested rate), α through
the smoothing. Uniform R_o is the baseline of equal duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse
from scipy.sparse.linalg import splu

from speednet.scoring import speediness

RHO_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1 … 0.9


@dataclass(frozen=True)
class SpeedupConfig:
    """What a speedup curve is asked for; stored (with the render settings) in `renders.params`."""

    rate: float = 3.0  # R_o: source duration / output duration
    alpha: float = 1.0  # smoothness weight, s² (√α ≈ seconds over which S may change)
    beta: float = 1.0  # weight of the overall-rate term against following V (steers the ρ search)
    s_max: float = 10.0  # fastest allowed speed
    rhos: tuple[float, ...] = RHO_GRID  # thresholds ρ tried for V(t)

    def __post_init__(self) -> None:
        if not self.rate >= 1.0:
            raise ValueError(f"rate (R_o) must be >= 1: an adaptive speedup never slows a video down; got {self.rate}")
        if not self.rate <= self.s_max:
            raise ValueError(f"rate {self.rate} is above s_max {self.s_max}: no curve within [1, s_max] reaches it; "
                             "raise s_max or ask for a lower rate")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}")
        if not self.rhos or not all(0.0 < r < 1.0 for r in self.rhos):
            raise ValueError(f"every ρ must be in (0, 1), got {self.rhos}")


@dataclass(frozen=True)
class SpeedupCurve:
    """S*(t) per source frame, with the V(t) it followed."""

    speed: np.ndarray  # (N,) S*(t), in [1, s_max]
    speediness: np.ndarray  # (N,) V(t) at the chosen ρ (unclipped: 0 where even 1x looked unnatural)
    rho: float  # the ρ the search chose
    offset: float  # the constant added by the final duration correction, beyond the rate term's own
    fps: float
    rate: float  # requested R_o

    @property
    def source_duration_s(self) -> float:
        return len(self.speed) / self.fps

    @property
    def output_duration_s(self) -> float:
        return output_duration_s(self.speed, self.fps)

    @property
    def achieved_rate(self) -> float:
        return self.source_duration_s / self.output_duration_s


def output_duration_s(speed: np.ndarray, fps: float) -> float:
    """Seconds a curve plays for: each source frame lasts 1/(fps·S)."""
    return float(np.sum(1.0 / (fps * np.asarray(speed, dtype=np.float64))))


def uniform_speedup(n_frames: int, rate: float) -> np.ndarray:
    """The baseline: every frame at R_o (the same output duration as an exact S*)."""
    return np.full(n_frames, float(rate))


class SmoothingSolver:
    """A⁻¹ for A = I + λDᵀD (λ = α·fps²), factorised once (sparse LU) for every right-hand side."""

    def __init__(self, n_frames: int, alpha: float, fps: float):
        lam = alpha * fps ** 2
        main = np.full(n_frames, 1.0 + 2.0 * lam)
        main[[0, -1]] = 1.0 + lam  # DᵀD has 1 on the end diagonal entries, 2 inside
        off = np.full(max(n_frames - 1, 0), -lam)
        matrix = sparse.diags([off, main, off], [-1, 0, 1], format="csc") if n_frames > 1 else sparse.identity(n_frames, format="csc")
        self._lu = splu(matrix)

    def solve(self, v: np.ndarray) -> np.ndarray:
        return self._lu.solve(np.asarray(v, dtype=np.float64))


def solve_speed(target: np.ndarray, rate: float, beta: float, smoother: SmoothingSolver) -> np.ndarray:
    """Unbounded minimiser of Σ(S−V)² + β·N(mean S − R_o)² + α·fps²·Σ(ΔS)² (Sherman–Morrison, exact)."""
    return smoother.solve(target) + beta / (1.0 + beta) * (rate - float(np.mean(target)))


def harmonic_rate(speed: np.ndarray) -> float:
    """Overall speedup of a curve: source duration / output duration = N / Σ 1/S."""
    return len(speed) / float(np.sum(1.0 / speed))


def meet_rate(unbounded: np.ndarray, rate: float, s_max: float) -> tuple[np.ndarray, float]:
    """clip(unbounded + c, 1, s_max) with the constant c that makes its harmonic mean exactly ``rate``.

    The harmonic mean of the clipped curve rises monotonically with c, from 1 (all clipped to
    1) to s_max (all clipped to s_max), so a root exists for every rate in [1, s_max].
    """
    def gap(c: float) -> float:
        return harmonic_rate(np.clip(unbounded + c, 1.0, s_max)) - rate

    lo, hi = 1.0 - float(unbounded.max()), s_max - float(unbounded.min())
    c = lo if gap(lo) >= 0 else hi if gap(hi) <= 0 else optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=1e-12)
    return np.clip(unbounded + c, 1.0, s_max), c


def optimal_speedup(p_natural: np.ndarray, speeds: np.ndarray, fps: float, config: SpeedupConfig) -> SpeedupCurve:
    """S*(t) from P_i(t) (rows of ``p_natural`` at ``speeds``), lasting exactly duration / R_o.

    For each ρ: V_ρ, solve, clip; keep the ρ whose curve needs the smallest duration
    correction (ties: the ρ nearest 0.5), then apply that correction exactly (``meet_rate``).
    """
    p_natural = np.asarray(p_natural)
    if p_natural.ndim != 2 or p_natural.shape[0] != len(speeds) or p_natural.shape[1] == 0:
        raise ValueError(f"need P(natural) as (speeds, frames) with at least one frame, got {p_natural.shape} "
                         f"for {len(speeds)} speeds")
    smoother = SmoothingSolver(p_natural.shape[1], config.alpha, fps)
    best = None
    for rho in config.rhos:
        v = speediness(p_natural, speeds, rho)
        unbounded = solve_speed(np.clip(v, 1.0, config.s_max), config.rate, config.beta, smoother)
        miss = abs(np.log(harmonic_rate(np.clip(unbounded, 1.0, config.s_max)) / config.rate))
        key = (round(miss, 9), abs(rho - 0.5))
        if best is None or key < best[0]:
            best = (key, rho, v, unbounded)
    _, rho, v, unbounded = best
    speed, offset = meet_rate(unbounded, config.rate, config.s_max)
    return SpeedupCurve(speed=speed, speediness=v, rho=rho, offset=offset, fps=fps, rate=config.rate)


def output_positions(speed: np.ndarray, fps: float, fps_out: float) -> np.ndarray:
    """Source position (in frames, continuous) shown by each output frame.

    Output time is τ(t) = ∫ 1/S: source frame i covers [i, i+1) in frame units and lasts
    1/(fps·S_i) of output. Output frame k is sampled at the middle of its own interval,
    (k + ½)/fps_out, mapped back through τ⁻¹; there are round(duration·fps_out) of them.
    """
    speed = np.asarray(speed, dtype=np.float64)
    tau = np.r_[0.0, np.cumsum(1.0 / (fps * speed))]
    n_out = max(1, int(round(tau[-1] * fps_out)))
    t_out = (np.arange(n_out) + 0.5) / fps_out
    return np.interp(t_out, tau, np.arange(len(speed) + 1, dtype=np.float64))
