"""Benchmarks: voice-to-voice latency of this pipeline against a vanilla pipecat one, the abuse run and capacity
(`server_process.py` runs `voice-agent serve` as a process), and the pieces the tests share with them: call audio
(`audio.py`), the app served in-process (`serving.py`), Twilio's wire messages. The provider simulator they use lives
in `agent/llm/simulator.py`; `bench/` imports the product, never the tests."""
