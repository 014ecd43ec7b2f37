"""How one event is read by one metric, without the ORM: the metric's property filters
(inclusive/exclusive) and its measure (the aggregation property, else the event's value). The
ingestion hot path and the SQL aggregation (usage.selectors) apply the same rules."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

AGGREGATIONS_NEEDING_VALUE = frozenset({"sum", "max", "latest"})


@dataclass(frozen=True)
class MetricRule:
    """The parts of a Metric that ingestion needs, read once per request."""

    id: object
    code: str
    aggregation_method: str
    aggregation_property: str
    inclusive: dict[str, frozenset[str]]
    exclusive: dict[str, frozenset[str]]

    @classmethod
    def from_metric(cls, metric_id, code, aggregation_method, aggregation_property, filters):
        inclusive: dict[str, set[str]] = {}
        exclusive: dict[str, set[str]] = {}
        for item in filters or []:
            target = exclusive if item.get("type") == "exclusive" else inclusive
            target.setdefault(str(item["name"]), set()).add(str(item["value"]))
        return cls(
            id=metric_id,
            code=code,
            aggregation_method=aggregation_method,
            aggregation_property=aggregation_property or "",
            inclusive={k: frozenset(v) for k, v in inclusive.items()},
            exclusive={k: frozenset(v) for k, v in exclusive.items()},
        )

    def matches(self, properties: dict) -> bool:
        """Inclusive filters: the property must equal one of the values given for its name;
        exclusive filters: it must equal none of them (a missing property passes)."""
        for name, values in self.inclusive.items():
            if property_text(properties.get(name)) not in values:
                return False
        for name, values in self.exclusive.items():
            text = property_text(properties.get(name))
            if text is not None and text in values:
                return False
        return True

    def measure(self, value: Decimal | None, properties: dict) -> Decimal | None:
        if self.aggregation_property:
            raw = properties.get(self.aggregation_property)
            if raw is not None:
                return as_decimal(raw)
        return value


@dataclass
class Aggregate:
    """Count, sum, max and latest of a metric's measures: combinable, so rollup rows and raw
    events add up to the same result (the SQL rollup upsert in usage.services combines alike)."""

    count: int = 0
    total: Decimal = Decimal(0)
    maximum: Decimal | None = None
    latest_at: dt.datetime | None = None
    latest_value: Decimal | None = None

    def add(self, count, total, maximum, latest_at=None, latest_value=None) -> None:
        self.count += count or 0
        self.total += Decimal(total or 0)
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = Decimal(maximum)
        if latest_at is not None and (
            self.latest_at is None
            or latest_at > self.latest_at
            or (
                latest_at == self.latest_at
                and latest_value is not None
                and (self.latest_value is None or latest_value > self.latest_value)
            )
        ):
            self.latest_at, self.latest_value = latest_at, latest_value

    def quantity(self, method: str) -> Decimal:
        if method == "count":
            return Decimal(self.count)
        if method == "sum":
            return self.total
        if method == "max":
            return self.maximum if self.maximum is not None else Decimal(0)
        if method == "latest":
            return self.latest_value if self.latest_value is not None else Decimal(0)
        raise ValueError(f"{method} is not combinable")


def property_text(raw) -> str | None:
    """A property as text, the way PostgreSQL's `properties ->> 'name'` renders it."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float | Decimal):
        return repr(float(raw)) if isinstance(raw, float) else str(raw)
    return json.dumps(raw)


def as_decimal(raw) -> Decimal | None:
    """A JSON number (or numeric string) as an exact Decimal; None when it is not one. Floats go
    through their shortest repr: the literal the client sent ("0.1", not 0.1000000000000000055)."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        raw = repr(raw)
    if isinstance(raw, Decimal):
        result = raw
    elif isinstance(raw, str):
        try:
            result = Decimal(raw.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None
