"""The phone side: one folder per carrier (`twilio/`, `telnyx/`, `plivo/`: its media stream, webhook and stream
gate, answer documents, call control and caller side) on shared pieces (`tokens.py` the per-call stream token,
`gate.py` the gate every carrier's bridge runs, `marks.py`, `keypad.py`, `transfer.py`, `line.py`), and one list of
carriers, `registry.CARRIERS`, which everything else reads."""
