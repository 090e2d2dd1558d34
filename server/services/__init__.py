"""Use cases: one function each, owning its transaction and calling the pure core."""
