"""The OpenAI Realtime protocol (GA), sans-I/O: the event codec and the session."""
