"""Repositories: hand-written SQL on a caller's transaction. They never commit."""
