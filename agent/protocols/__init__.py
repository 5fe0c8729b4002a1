"""The browser page's wire protocol, the websocket transport every client socket runs on (the page's and the
carriers' in `agent/telephony/`), and the input guard that bounds what a client may send."""
