"""Pipelines: the one voice chain (`voice.py`) and the entries that feed it: replay, browser, phone."""
