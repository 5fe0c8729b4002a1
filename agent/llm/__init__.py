"""Streaming chat-completion client (httpx + SSE), provider selection, the local llama.cpp server and the
pipecat LLM service that speaks through them."""
