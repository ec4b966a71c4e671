"""What the closed schema engine costs and what it stops, beside baselines measured in the same run.

    uv run python -m tests.bench.schema_engine

- a typical configuration (the secrets bench's) against a typical schema: `violations` on the
  closed engine next to the same schema on plain `jsonschema` (what the service ran before);
- `^(a+)+$` against n a's and a '!': RE2 next to Python's `re` (backtracking, doubling per a);
- a schema whose definitions each apply the next one twice (2^40 applications), cut by the step
  budget, next to a large legitimate document (2,000 objects of 5 fields under an `items` schema).

Figures are medians, in ms; the ratios are what to compare across machines.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import re2
from jsonschema.validators import validator_for

from svc.json_documents import check_schema, violations
from svc.json_schema import step_budget
from tests.bench.secrets_crypto import CONFIG

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "database": {
            "type": "object",
            "properties": {"host": {"type": "string", "pattern": "^[a-z.]+$"}, "port": {"type": "integer"}},
            "required": ["host", "port"],
        },
        "cache": {"type": "object", "properties": {"ttl_seconds": {"type": "integer", "minimum": 0}}},
    },
    "required": ["database"],
}


def median_ms(run: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def exponential_schema(levels: int) -> dict[str, Any]:
    definitions = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    return {"$defs": {**definitions, f"d{levels}": {"type": "object"}}, "$ref": "#/$defs/d0"}


def main() -> None:
    check_schema(SCHEMA)
    plain = validator_for(SCHEMA)(SCHEMA)
    closed = median_ms(lambda: violations(SCHEMA, CONFIG), 101)
    before = median_ms(lambda: list(plain.iter_errors(CONFIG)), 101)
    print(f"typical config:      closed {closed:.3f} ms, plain jsonschema {before:.3f} ms ({closed / before:.2f}x)")

    for n in (18, 20, 22):
        text = "a" * n + "!"
        linear = median_ms(lambda: re2.search("^(a+)+$", text), 5)
        backtracking = median_ms(lambda: re.search("^(a+)+$", text), 3)
        print(f"^(a+)+$ at n={n}:    RE2 {linear:.3f} ms, re {backtracking:.1f} ms ({backtracking / linear:.0f}x)")

    exponential = exponential_schema(40)
    check_schema(exponential)
    cut = median_ms(lambda: violations(exponential, {}), 3)
    items = {"type": "object", "properties": {f"p{i}": {"type": "integer", "minimum": 0} for i in range(5)}}
    large_schema = {"type": "object", "properties": {"items": {"type": "array", "items": items}}}
    large = {"items": [{f"p{i}": i for i in range(5)} for _ in range(2000)]}
    check_schema(large_schema)
    legitimate = median_ms(lambda: violations(large_schema, large), 3)
    print(
        f"2^40 applications:   cut at {step_budget({})} steps in {cut:.0f} ms; "
        f"2,000 objects ({step_budget(large)} steps allowed) validated in {legitimate:.0f} ms ({cut / legitimate:.2f}x)"
    )


if __name__ == "__main__":
    main()
