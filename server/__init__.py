"""StreamScribe's server: the sans-I/O session core and the HTTP/websocket edges around it.

Core modules (no sockets, asyncio, HTTP or model code; a test walks their imports):
``errors``, ``options``, ``transcription``, ``events``, ``agreement``, ``prompt``, ``quality``,
``session``, ``protocol``. Edges: ``scheduler``, ``stream_endpoint``, ``app``, ``backends``,
``settings``, ``cli``.
"""
