"""Turn taking: when the caller started and stopped speaking, and when their turn is over."""
