"""Hourly prices of compute profiles, from the shipped ``pricing.json`` plus overrides.

A job's ``compute_profile`` names what one worker runs on; its price is USD per
worker-hour. Profiles:

* ``fargate:<N>vcpu:<M>gb`` and ``fargate-spot:<N>vcpu:<M>gb``: N x vCPU-hour + M x GB-hour;
* ``ec2:<type>`` and ``ec2-spot:<type>``: the instance's hourly price;
* ``batch-fargate[-spot]:...`` and ``batch-ec2[-spot]:...``: the same as without ``batch-``
  (AWS Batch itself is free; you pay the capacity it runs on).

An explicit entry under ``profiles`` (exact profile string -> hourly rate) wins over the
computed price. Overrides come from a JSON file named by ``COST_TRACKER_PRICING_FILE`` and
then from the JSON in ``COST_TRACKER_PRICING_OVERRIDES``; both have the shape of
``pricing.json`` and are merged key by key, so ``{"ec2": {"spot": {"g5.xlarge": 0.45}}}``
changes one rate and keeps the rest. An override whose shape is wrong (not an object, an
unknown key, a number where an object belongs) raises :class:`ConfigurationError` at load,
naming the variable and the allowed shape (:data:`OVERRIDE_SHAPE`); a rate that is not a
number leaves the profiles using it unpriced. An unknown profile raises
:class:`UnknownProfileError`; it is never guessed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from metricskit.errors import ConfigurationError, MetricsKitError

logger = logging.getLogger("cost_tracker")

ENV_PRICING_FILE: Final = "COST_TRACKER_PRICING_FILE"
"""Path of a JSON file whose rates override the shipped table."""
ENV_PRICING_OVERRIDES: Final = "COST_TRACKER_PRICING_OVERRIDES"
"""JSON text whose rates override the shipped table and the file (applied last)."""

MARKETS: Final = ("on_demand", "spot")
FARGATE_RATES: Final = ("vcpu_hour", "gb_hour")
INFO_KEYS: Final = ("region", "currency", "retrieved", "sources")
"""Descriptive keys of pricing.json; an override may carry them, prices ignore them."""
OVERRIDE_SHAPE: Final = (
    '{"fargate": {"on_demand" | "spot": {"vcpu_hour": <rate>, "gb_hour": <rate>}}, '
    '"ec2": {"on_demand" | "spot": {"<instance-type>": <rate>}}, '
    '"profiles": {"<profile>": <rate>}}, every key optional, rates in USD per hour'
)
"""What a pricing override (file or environment) may hold: the shape of pricing.json."""

PROFILE_FORMS: Final = (
    "fargate:<N>vcpu:<M>gb",
    "fargate-spot:<N>vcpu:<M>gb",
    "batch-fargate:<N>vcpu:<M>gb",
    "batch-fargate-spot:<N>vcpu:<M>gb",
    "ec2:<instance-type>",
    "ec2-spot:<instance-type>",
    "batch-ec2:<instance-type>",
    "batch-ec2-spot:<instance-type>",
)

_FARGATE_SIZE = re.compile(r"^(?P<vcpu>\d+(?:\.\d+)?)vcpu:(?P<gb>\d+(?:\.\d+)?)gb$")
# family.size, where both may hold hyphens: "g5.xlarge", "u-6tb1.metal", "c7i.metal-24xl".
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9\-]*\.[a-z0-9]+(?:-[a-z0-9]+)*$")


class UnknownProfileError(MetricsKitError, ValueError):
    """A compute profile that is malformed or has no price in the table."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A parsed compute profile: ``fargate`` or ``ec2`` capacity, on-demand or Spot."""

    text: str
    platform: str  # "fargate" or "ec2"
    spot: bool
    vcpu: float = 0.0
    memory_gb: float = 0.0
    instance_type: str = ""

    @property
    def market(self) -> str:
        return "spot" if self.spot else "on_demand"


def parse_profile(text: str) -> Profile:
    """Parse a compute profile string.

    >>> parse_profile("fargate-spot:2vcpu:4gb").vcpu
    2.0
    >>> parse_profile("ec2:g5.xlarge").instance_type
    'g5.xlarge'
    """
    if not isinstance(text, str) or ":" not in text:
        raise UnknownProfileError(_unknown(text))
    kind, _, rest = text.strip().lower().partition(":")
    if kind.startswith("batch-"):
        kind = kind[len("batch-") :]  # Batch adds no charge of its own
    spot = kind.endswith("-spot")
    platform = kind[: -len("-spot")] if spot else kind
    if platform == "fargate":
        match = _FARGATE_SIZE.match(rest)
        if match is None:
            raise UnknownProfileError(_unknown(text))
        vcpu, memory = float(match["vcpu"]), float(match["gb"])
        if vcpu <= 0 or memory <= 0:
            raise UnknownProfileError(_unknown(text))
        return Profile(text, "fargate", spot, vcpu=vcpu, memory_gb=memory)
    if platform == "ec2" and _INSTANCE_TYPE.match(rest):
        return Profile(text, "ec2", spot, instance_type=rest)
    raise UnknownProfileError(_unknown(text))


def _unknown(text: object) -> str:
    return f"compute profile {text!r} is not one of: " + ", ".join(PROFILE_FORMS)


class PriceTable:
    """The hourly rates the tracker prices jobs with.

    >>> table = PriceTable.load(environ={})
    >>> round(table.hourly_rate("fargate:4vcpu:8gb"), 5)
    0.19748
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        """The shipped table with the file and environment overrides applied."""
        env = os.environ if environ is None else environ
        text = resources.files("cost_tracker").joinpath("pricing.json").read_text("utf-8")
        data: dict[str, Any] = json.loads(text)
        path = env.get(ENV_PRICING_FILE, "").strip()
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    from_file = json.load(handle)
            except (OSError, ValueError) as error:
                raise ConfigurationError(
                    f"{ENV_PRICING_FILE}={path!r} is not a readable JSON object: {error}"
                ) from error
            data = merge(data, check_override(from_file, ENV_PRICING_FILE))
        raw = env.get(ENV_PRICING_OVERRIDES, "").strip()
        if raw:
            try:
                from_env = json.loads(raw)
            except ValueError as error:
                raise ConfigurationError(
                    f"{ENV_PRICING_OVERRIDES} must be a JSON object shaped like pricing.json, "
                    f'e.g. {{"ec2": {{"spot": {{"g5.xlarge": 0.45}}}}}}: {error}'
                ) from error
            data = merge(data, check_override(from_env, ENV_PRICING_OVERRIDES))
        return cls(data)

    @property
    def retrieved(self) -> str:
        return str(self.data.get("retrieved", "unknown"))

    def hourly_rate(self, profile_text: str) -> float:
        """USD per worker-hour for ``profile_text``; raises UnknownProfileError if unpriced."""
        explicit = self.data.get("profiles", {}).get(profile_text)
        if explicit is not None:
            return _rate(explicit, f"profiles.{profile_text}")
        profile = parse_profile(profile_text)
        if profile.platform == "fargate":
            rates = self.data.get("fargate", {}).get(profile.market, {})
            vcpu_hour, gb_hour = rates.get("vcpu_hour"), rates.get("gb_hour")
            if vcpu_hour is None or gb_hour is None:
                raise UnknownProfileError(f"no Fargate {profile.market} rates in the price table")
            return profile.vcpu * _rate(vcpu_hour, "vcpu_hour") + profile.memory_gb * _rate(
                gb_hour, "gb_hour"
            )
        prices = self.data.get("ec2", {}).get(profile.market, {})
        price = prices.get(profile.instance_type)
        if price is None:
            known = ", ".join(sorted(prices))
            raise UnknownProfileError(
                f"no EC2 {profile.market} price for {profile.instance_type!r} (profile "
                f"{profile_text!r}); known types: {known}. Set hourly_rate on the job item or "
                f"add it through {ENV_PRICING_OVERRIDES}."
            )
        return _rate(price, profile.instance_type)


def _rate(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnknownProfileError(f"price {where} = {value!r} is not a number")
    rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise UnknownProfileError(f"price {where} = {value!r} is not a finite rate >= 0")
    return rate


def check_override(value: object, variable: str) -> dict[str, Any]:
    """``value`` (decoded JSON) if it has the shape of :data:`OVERRIDE_SHAPE`; else raise
    :class:`ConfigurationError` naming ``variable``, every problem and the allowed shape.

    >>> check_override({"ec2": {"spot": {"g5.xlarge": 0.45}}}, "X")
    {'ec2': {'spot': {'g5.xlarge': 0.45}}}
    >>> check_override({"ec2": 5}, "X")
    Traceback (most recent call last):
    ...
    metricskit.errors.ConfigurationError: X: ec2 must be an object, got a number. Allowed shape: ...
    """
    problems: list[str] = []
    if not isinstance(value, dict):
        problems.append(f"the override must be an object, got {_kind(value)}")
    else:
        for key, section in value.items():
            if key in INFO_KEYS:
                continue
            if key == "profiles":
                _expect_object(section, key, problems)
            elif key in ("fargate", "ec2"):
                if _expect_object(section, key, problems):
                    _check_markets(section, key, problems)
            else:
                problems.append(
                    f"{key} is not one of fargate, ec2, profiles, " + ", ".join(INFO_KEYS)
                )
    if problems:
        raise ConfigurationError(
            f"{variable}: " + "; ".join(problems) + f". Allowed shape: {OVERRIDE_SHAPE}"
        )
    assert isinstance(value, dict)
    return value


def _check_markets(section: dict[str, Any], platform: str, problems: list[str]) -> None:
    for market, rates in section.items():
        where = f"{platform}.{market}"
        if market not in MARKETS:
            problems.append(f"{where} is not one of " + ", ".join(MARKETS))
        elif _expect_object(rates, where, problems) and platform == "fargate":
            problems.extend(
                f"{where}.{name} is not one of " + ", ".join(FARGATE_RATES)
                for name in rates
                if name not in FARGATE_RATES
            )


def _expect_object(value: object, where: str, problems: list[str]) -> bool:
    if isinstance(value, dict):
        return True
    problems.append(f"{where} must be an object, got {_kind(value)}")
    return False


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else type(value).__name__


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base`` key by key (nested objects merge, values replace)."""
    merged = dict(base)
    for key, value in override.items():
        earlier = merged.get(key)
        if isinstance(earlier, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(earlier, value)
        else:
            merged[key] = value
    return merged
