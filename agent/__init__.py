"""The voice agent's parts: settings, the LLM client and providers, local speech models, latency tracking,
the server and the command line. `pipelines/` assembles them into one streaming chain."""
