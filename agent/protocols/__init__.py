"""Wire protocols of the agent's clients: the browser page's websocket and Twilio Media Streams, and the
websocket transport both run on."""
