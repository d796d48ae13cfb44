"""The machinery that runs requests: the scheduler's worker tasks and threads, metrics, and
the context one server's endpoints share."""
