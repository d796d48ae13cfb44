"""StreamScribe's server, one subpackage per layer; imports point down this list only:

    core/      sans-I/O: the session and its parts, protocol messages, formats, errors, units
    settings   the configuration, grouped; each part receives its own group
    policy/    pure decisions with the clock passed in: load, admission, limits, auth, queue
               order, retries and the circuit breaker, the resume log
    backends/  speech models behind one interface, chosen by name (``registry``)
    runtime/   the scheduler's executor (threads, tasks), metrics, the context endpoints share
    web/       the ASGI app (wiring), each protocol adapter, live sessions, serving
    logs, cli  the process: logging set-up and ``streamscribe serve``

``tests/test_layering.py`` reads this structure from the directories and holds it.
"""
