"""Use cases. Each public method opens one transaction and commits it explicitly."""
