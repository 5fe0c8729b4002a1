"""The HTTP server (`voice-agent serve`): the browser page, its websocket, the Twilio bridge and /metrics."""
