"""Telephony carriers: one module per carrier (wire format, webhook and stream admission, call control) and, in
`admission.py`, what they share: the per-call stream token."""
