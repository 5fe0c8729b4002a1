"""The LLM side: provider declarations and the streaming chat-completion client (httpx + SSE), the failover chain,
the provider simulator, the local llama.cpp server, and the pipecat LLM service that speaks through them
(`voice-agent bench-llm`, which times them, is `agent/llm_bench.py`)."""
