"""
The results table: every figure of our server next to the baseline's from
the same run, as medians of the repeated runs, with the ratio and the
target it is held to.

Records are the JSON lines of the runs, each tagged by the runner with
``bench`` (the scenario's name) and ``server`` (``ours`` or ``baseline``).
The table is reStructuredText, so it can be pasted into the README as is.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from benchmarks.stats import median, ratio


@attrs.frozen
class Target:
    """What a figure of ours must reach: a ratio to the baseline, or a bound."""

    kind: str  # "ratio_at_least", "ratio_at_most" or "at_most"
    value: float
    unit: str = ""

    def describe(self) -> str:
        if self.kind == "ratio_at_least":
            return f">= {self.value:g}x baseline"
        if self.kind == "ratio_at_most":
            return "<= baseline" if self.value == 1 else f"<= {self.value:g}x baseline"
        return f"<= {self.value:g}{' ' + self.unit if self.unit else ''}"

    def met(self, ours: float | None, r: float | None) -> bool | None:
        if self.kind == "at_most":
            return None if ours is None else ours <= self.value
        if r is None:
            return None
        return r >= self.value if self.kind == "ratio_at_least" else r <= self.value


@attrs.frozen
class Figure:
    bench: str
    field: str
    label: str
    #: Multiplies the field's value for display (seconds to microseconds...).
    scale: float = 1.0
    digits: int = 0
    target: Target | None = None


FIGURES: tuple[Figure, ...] = (
    Figure("fanout-100", "deliveries_per_s", "fan-out, 100 receivers: deliveries/s"),
    Figure("fanout-100", "server_cpu_s_per_delivery", "fan-out, 100: server CPU µs/delivery", 1e6, 2),
    Figure(
        "fanout-1000",
        "deliveries_per_s",
        "fan-out, 1,000 receivers: deliveries/s",
        target=Target("ratio_at_least", 0.9),
    ),
    Figure("fanout-1000", "server_cpu_s_per_delivery", "fan-out, 1,000: server CPU µs/delivery", 1e6, 2),
    Figure("fanout-1000", "lat_p99_ms", "fan-out, 1,000: p99 ms (queueing in the window)", digits=1),
    Figure("fanout-5000", "deliveries_per_s", "fan-out, 5,000 receivers: deliveries/s"),
    Figure("fanout-5000", "server_cpu_s_per_delivery", "fan-out, 5,000: server CPU µs/delivery", 1e6, 2),
    Figure(
        "latency-50k",
        "lat_p99_ms",
        "50,000 deliveries/s, 1,000 users: p99 ms",
        digits=2,
        target=Target("ratio_at_most", 1.0),
    ),
    Figure("latency-50k", "lat_p50_ms", "50,000 deliveries/s: p50 ms", digits=2),
    Figure("latency-50k", "deliveries_per_s", "50,000 deliveries/s: deliveries/s achieved"),
    Figure("latency-50k", "server_cpu_pct", "50,000 deliveries/s: server CPU %", digits=1),
    Figure(
        "private-500",
        "deliveries_per_s",
        "private, 500 pairs x 4 in flight: messages/s",
        target=Target("ratio_at_least", 0.9),
    ),
    Figure("private-500", "server_cpu_s_per_delivery", "private: server CPU µs/message", 1e6, 2),
    Figure(
        "connect-10k",
        "rss_kib_per_conn",
        "10,000 logged in: RSS KiB per connection",
        digits=2,
        target=Target("at_most", 4, "KiB"),
    ),
    Figure(
        "connect-10k",
        "login_time_s",
        "10,000 logins, 50 in flight: seconds",
        digits=2,
        target=Target("at_most", 1, "s"),
    ),
    Figure(
        "storm",
        "lag_p99_ms",
        "login storm (hashed): p99 lag ms",
        digits=1,
        target=Target("at_most", 20, "ms"),
    ),
    Figure("storm", "lag_max_ms", "login storm: max lag ms", digits=1),
    Figure("storm", "idle_lag_p99_ms", "before the storm: p99 lag ms", digits=1),
    Figure("storm", "storm_logins_per_s", "login storm: logins/s", digits=1),
)


def values(records: Iterable[Mapping[str, Any]], bench: str, server: str, field: str) -> list[float]:
    out = []
    for r in records:
        if r.get("bench") == bench and r.get("server") == server and not r.get("aborted"):
            v = r.get(field)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                out.append(float(v))
    return out


def spread(vs: Sequence[float]) -> float | None:
    """Half the range of the runs, relative to their median: how noisy the figure was."""
    m = median(vs)
    if len(vs) < 2 or not m:
        return None
    return (max(vs) - min(vs)) / 2 / m


def fmt(value: float | None, digits: int) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def cell(vs: Sequence[float], figure: Figure) -> str:
    m = median(vs)
    if m is None:
        return "n/a"
    text = fmt(m * figure.scale, figure.digits)
    s = spread(vs)
    if s is not None:
        text += f" ±{s * 100:.0f}%"
    return text


@attrs.frozen
class Row:
    figure: Figure
    ours: list[float]
    baseline: list[float]

    @property
    def ratio(self) -> float | None:
        return ratio(median(self.ours), median(self.baseline))

    @property
    def met(self) -> bool | None:
        if self.figure.target is None:
            return None
        return self.figure.target.met(median(self.ours), self.ratio)


def rows(records: Sequence[Mapping[str, Any]], figures: Iterable[Figure] = FIGURES) -> list[Row]:
    benches = {r.get("bench") for r in records}
    return [
        Row(f, values(records, f.bench, "ours", f.field), values(records, f.bench, "baseline", f.field))
        for f in figures
        if f.bench in benches
    ]


def rst_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in body)) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in body), rule])


def table(records: Sequence[Mapping[str, Any]], figures: Iterable[Figure] = FIGURES) -> str:
    body = []
    for row in rows(records, figures):
        f = row.figure
        r = row.ratio
        met = row.met
        body.append(
            [
                f.label,
                cell(row.ours, f),
                cell(row.baseline, f),
                "n/a" if r is None else f"{r:.2f}",
                f.target.describe() if f.target else "",
                "" if met is None else ("yes" if met else "NO"),
            ]
        )
    header = ["figure", "ours", "baseline", "ours/baseline", "target", "met"]
    return rst_table(header, body)


def problems(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Runs whose figures should not be trusted as they stand, and why."""
    out = []
    for r in records:
        what = f"{r.get('bench')} {r.get('server')} run {r.get('repeat')}"
        if r.get("aborted"):
            out.append(f"{what}: aborted: {r.get('first_error')}")
            continue
        if r.get("login_failed"):
            out.append(f"{what}: {r['login_failed']} logins failed: {r.get('first_error')}")
        completeness = r.get("completeness")
        if isinstance(completeness, (int, float)) and completeness < 0.999:
            out.append(f"{what}: completeness {completeness}")
        if r.get("lost_after_login"):
            out.append(f"{what}: {r['lost_after_login']} connections lost after login")
    return out


def document(records: Sequence[Mapping[str, Any]], context: Sequence[str]) -> str:
    """The table with the lines that say where and how it was measured."""
    parts = [*context, "", table(records)]
    notes = problems(records)
    if notes:
        parts += ["", "Runs with problems:", ""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def publish(text: str, records: Sequence[Mapping[str, Any]], output: str | None, runs: str | None) -> None:
    """Print a run's table; write it to C{output} and its runs, a JSON line each, to C{runs}, if given."""
    sys.stdout.write("\n" + text)
    sys.stdout.flush()
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    if runs:
        with open(runs, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
