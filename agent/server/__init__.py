"""The HTTP server (`voice-agent serve`): the app and its routes (the browser page and its websocket, every
carrier's phone routes as the carrier registry lists them, outbound dialling, /metrics, /health and /ready), load
admission and phone slots, the worker processes that run calls, metrics and the graceful drain."""
