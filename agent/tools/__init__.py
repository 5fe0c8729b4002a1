"""Tools the agent can call (OpenAI function calling): the registry and the demo tools (clock, table booking)."""
