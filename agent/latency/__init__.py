"""Latency: per-turn timelines, the budget that judges them, and the observer that builds them."""
