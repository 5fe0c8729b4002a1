"""The carrier's side of each phone bridge, as `voice-agent call` (and the tests' carrier doubles) speak it: the
webhook a carrier posts (signed as that carrier signs it), the answer document it reads, and its media stream's
messages. One module per carrier, on `dialect.py`'s interface; `agent/phone_client.py` runs the call."""
