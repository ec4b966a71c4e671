"""Benchmark harness for the service (issue 6): `uv run python -m tests.bench [--quick]`.

Not part of `uv run pytest` (pytest.ini_options norecursedirs: tests/bench)."""
