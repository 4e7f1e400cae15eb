"""How close is the ETA to the truth? metricskit vs the original plan vs tqdm's default.

Each profile is a simulated job on an injected clock (no sleeping): records arrive in 50 ms
steps, Poisson-distributed around a rate that follows the profile, with a per-second jitter
of about 25 %. After 10 % of the job is done, every second we ask three estimators for the
time remaining and compare it with the true remaining time (known once the simulation ends):

* metricskit: ``metricskit.eta.EtaEstimator``, fed the count once per ``--feed`` seconds
  (1 s: a progress bar or ``status()`` poller; 60 s: only the default flush); the figure
  scored is the ETA computed at the last feed, as published (not refreshed in between);
* original plan: ``(total - done) / (done / elapsed)``, the overall average;
* tqdm: a real ``tqdm.tqdm`` (default ``smoothing=0.3``, ``mininterval=0.1``) whose clock is
  replaced by the simulation's, updated every step; its estimate is what its bar prints,
  ``(total - n) / format_dict["rate"]``.

The figure per profile and method is the median of |estimate - truth| / truth over the
samples; an estimator that gives no estimate scores 1.0 (100 %) for that sample.

    python bench/eta_accuracy.py [--seed 7] [--feed 1 60]
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from metricskit.eta import EtaEstimator

STEP = 0.05
BASE_RATE = 100.0
TOTAL = 180_000  # 30 minutes at the base rate


@dataclass
class Profile:
    name: str
    changes: bool  # does the rate change (the target there is to beat tqdm)?
    rate: Callable[[float, float, random.Random], float]  # (t, done fraction, rng) -> rate
    state: dict[str, float] = field(default_factory=dict)


def steady(t: float, frac: float, rng: random.Random) -> float:
    return BASE_RATE


def warmup(t: float, frac: float, rng: random.Random) -> float:
    return BASE_RATE * min(1.0, 0.1 + 0.9 * t / 300.0)  # five minutes to full speed


def slowdown(t: float, frac: float, rng: random.Random) -> float:
    return BASE_RATE if frac < 0.5 else 0.4 * BASE_RATE


def stalls(t: float, frac: float, rng: random.Random) -> float:
    return BASE_RATE if t % 60.0 < 45.0 else 0.0  # 15 s stall every minute


class Bursts:
    """A two-state Markov rate: 50/s for ~30 s, then bursts of 300/s for ~8 s."""

    def __init__(self) -> None:
        self.high = False
        self.until = 0.0

    def __call__(self, t: float, frac: float, rng: random.Random) -> float:
        if t >= self.until:
            self.high = not self.high
            self.until = t + rng.expovariate(1 / (8.0 if self.high else 30.0))
        return 300.0 if self.high else 50.0


def simulate(profile: Profile, seed: int, feed: float) -> dict[str, list[float]]:
    rng = random.Random(seed)
    clock = [0.0]
    bar = tqdm(total=TOTAL, file=io.StringIO(), mininterval=0.1)
    bar._time = lambda: clock[0]  # type: ignore[attr-defined]  # injected clock
    bar.start_t = bar.last_print_t = 0.0
    est = EtaEstimator()
    est.update(0.0, 0)
    done = 0
    jitter = 1.0
    samples: list[tuple[float, float | None, float | None, float | None]] = []
    next_sample = next_feed = 0.0
    ours: float | None = None  # the last estimate published, as a dashboard would show it
    t = 0.0
    steps_per_second = round(1.0 / STEP)
    step = 0
    while done < TOTAL:
        if step % steps_per_second == 0:
            jitter = math.exp(rng.gauss(0.0, 0.25))
        lam = profile.rate(t, done / TOTAL, rng) * jitter * STEP
        k = min(_poisson(rng, lam), TOTAL - done)
        step += 1
        t = step * STEP
        clock[0] = t
        done += k
        if k:
            bar.update(k)
        if t >= next_feed:
            # What a flush would publish (ETASeconds) or status() would return at this moment.
            est.update(t, done)
            ours = est.estimate(TOTAL - done).eta_seconds
            next_feed += feed
        if t >= next_sample:
            next_sample += 1.0
            if done >= 0.1 * TOTAL and done < TOTAL:
                remaining = TOTAL - done
                plan = remaining / (done / t)
                rate = bar.format_dict["rate"]
                tq = remaining / rate if rate else None
                samples.append((t, ours, plan, tq))
    bar.close()
    end = t
    errors: dict[str, list[float]] = {"metricskit": [], "original plan": [], "tqdm": []}
    for when, *estimates in samples:
        truth = end - when
        if truth <= 0:
            continue
        for name, value in zip(errors, estimates, strict=True):
            errors[name].append(1.0 if value is None else abs(value - truth) / truth)
    return errors


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def run(feed: float, seed: int) -> int:
    """Print one table (and its RATIO lines) for one feeding cadence; returns targets missed."""
    profiles = [
        Profile("steady", False, steady),
        Profile("warmup", True, warmup),
        Profile("slowdown", True, slowdown),
        Profile("stalls", True, stalls),
        Profile("bursts", True, Bursts()),
    ]
    print(f"\nmedian |ETA error| / true remaining, each second after 10%; fed every {feed:g} s")
    print(f"{'profile':<10} {'metricskit':>11} {'orig. plan':>11} {'tqdm':>11}  target")
    failures = 0
    rows = []
    for profile in profiles:
        errors = simulate(profile, seed, feed)
        med = {name: statistics.median(values) for name, values in errors.items()}
        if profile.changes:
            ok = med["metricskit"] < med["tqdm"]
            target = f"< tqdm: {'met' if ok else 'MISSED'}"
        else:
            ok = med["metricskit"] <= 0.10
            target = f"<= 10%: {'met' if ok else 'MISSED'}"
        failures += not ok
        rows.append((profile.name, med))
        print(
            f"{profile.name:<10} {med['metricskit']:>10.1%} {med['original plan']:>11.1%} "
            f"{med['tqdm']:>11.1%}  {target}"
        )
    suffix = f"_feed{feed:g}s"
    for name, med in rows:
        for method, value in med.items():
            print(f"RATIO eta_error_{name}_{method.replace(' ', '_')}{suffix} = {value:.4f}")
        if med["tqdm"] > 0:
            ratio = med["metricskit"] / med["tqdm"]
            print(f"RATIO eta_error_{name}_metricskit_vs_tqdm{suffix} = {ratio:.3f}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--feed",
        type=float,
        nargs="+",
        default=[1.0, 60.0],
        help="seconds between the samples metricskit gets (1: a progress bar; 60: flushes)",
    )
    args = parser.parse_args(argv)
    failures = sum(run(feed, args.seed) for feed in args.feed)
    print(f"\ntargets missed: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
