"""Plivo: its media stream (`stream.py`), webhook and stream gate (`gate.py`), answer documents (`answer.py`), call
control (`rest.py`), the caller side `voice-agent call` speaks (`caller.py`) and its registry entry (`carrier.py`)."""
