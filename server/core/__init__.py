"""The sans-I/O core: bytes plus stream time in, events out. No asyncio, threads, sockets,
HTTP or model code, and no configuration; it never calls a model, it emits requests."""
