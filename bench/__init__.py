"""Benchmarks: voice-to-voice latency of this pipeline against a vanilla pipecat one, and the provider simulator."""
