"""OpenAI's Realtime transcription protocol, sans I/O: session configuration, client events,
input audio, and the mapping of the session core's events onto OpenAI's server events."""
