"""The guide's thresholds (CPU < 70%, evictions ~ 0, hit rate > 90%) and a judgement against
them; shared by INFO (ops/stats.py) and CloudWatch (ops/aws/cloudwatch.py), and by triage."""

from __future__ import annotations

from dataclasses import dataclass

# Below this many lookups a hit rate says little (a fresh cache, an idle dev box).
MIN_LOOKUPS = 100


@dataclass
class Thresholds:
    max_cpu: float = 70.0
    max_evictions: int = 0
    min_hit_rate: float = 90.0
    max_throttled: int = 0
    min_lookups: int = MIN_LOOKUPS


@dataclass
class Judgement:
    name: str
    source: str  # "info" or "cloudwatch"
    value: float | None
    limit: float
    breached: bool
    evidence: str


def hit_rate_judgement(
    source: str, hits: float, misses: float, limits: Thresholds, when: str
) -> Judgement:
    lookups = hits + misses
    if lookups < limits.min_lookups:
        return Judgement(
            "hit-rate",
            source,
            None,
            limits.min_hit_rate,
            False,
            f"not judged: {lookups:.0f} lookups {when} (< {limits.min_lookups})",
        )
    rate = round(100 * hits / lookups, 2)
    return Judgement(
        "hit-rate",
        source,
        rate,
        limits.min_hit_rate,
        rate < limits.min_hit_rate,
        f"{rate:.1f}% of {lookups:.0f} lookups hit {when} (minimum {limits.min_hit_rate:g}%)",
    )
