"""The network edge: the ASGI app, each protocol adapter (StreamScribe's ``/v1/stream``,
OpenAI's audio REST API), live sessions on websockets, access control, serving."""
