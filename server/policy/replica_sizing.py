"""How many requests a Ray Serve replica of the model should hold, from what its model was
measured to cost on the replica's own hardware: pure arithmetic, tested without Ray.

A replica runs the server's scheduler, so requests beyond its workers wait in its queue, finals
first. A final that arrives behind ``k`` others is answered after about ``k + 1`` final costs
(``workers`` calls share the replica's cores, so more workers do not finish them sooner). The
replica may therefore hold as many requests as it can answer one after another within the
final latency budget, times the requests one model call can batch:

    max_ongoing_requests     = max(2, floor(budget / final cost)) x batch size
    target_ongoing_requests  = max(1, max_ongoing_requests // 2)

Ray Serve routes no more than ``max_ongoing_requests`` to a replica (the rest wait in the
gateways' routers, or go to a replica with room). At least two, so that a final can wait at a
replica beside a running partial and go next, rather than queue behind partials in a router,
where nothing orders them. The autoscaler adds replicas when the average replica holds more
than ``target_ongoing_requests``: at half the budget, so a new replica is loading before finals
miss the budget. Partials count as requests too, although
they cost less (a 10 s encoder window instead of 30 s) and are shed first: the limits err on the
side of finals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReplicaLimits:
    max_ongoing_requests: int
    target_ongoing_requests: int


def replica_limits(final_cost_s: float, budget_s: float, batch_size: int = 1) -> ReplicaLimits:
    """The limits for a replica whose final costs ``final_cost_s`` alone."""
    if final_cost_s <= 0 or budget_s <= 0:
        raise ValueError("final cost and budget must be positive")
    in_budget = max(2, math.floor(budget_s / final_cost_s))
    max_ongoing = in_budget * max(1, batch_size)
    return ReplicaLimits(max_ongoing, max(1, max_ongoing // 2))
