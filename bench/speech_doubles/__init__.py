"""Local doubles of the hosted speech providers' websocket APIs, backed by the local models (for tests and bench)."""
