"""``streamscribe ray``: put the speech model on a running Ray cluster as a Ray Serve
application, for gateways started with ``streamscribe serve --backend ray``.

    streamscribe ray deploy --address ADDR --model M --replicas N [--autoscale MIN:MAX]
                            [--num-gpus G] [--cpu-threads T] [--compute-type C]
    streamscribe ray status --address ADDR
    streamscribe ray delete --address ADDR

``deploy`` starts the replicas holding one request each, asks one of them what a final cost on
its hardware, and deploys again with ``max_ongoing_requests`` (and the autoscaler's
``target_ongoing_requests``) set from that cost (``server.policy.replica_sizing``); Serve
replaces the replicas for the new limits (each loads the model once more). It returns once they
are ready. Needs the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from server.core.errors import StreamScribeError, UsageError
from server.policy.replica_sizing import replica_limits
from server.settings import LocalModelSettings, SchedulerSettings

# Before the replicas have measured their model: one request at a time.
FIRST_MAX_ONGOING = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="ray_command", required=True, metavar="ACTION")
    deploy = commands.add_parser("deploy", help="deploy the model and wait until it is ready")
    _add_cluster(deploy)
    deploy.add_argument("--model", default=LocalModelSettings().model, help="model to serve")
    deploy.add_argument("--replicas", type=int, default=1, help="replicas (fixed)")
    deploy.add_argument(
        "--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas instead"
    )
    deploy.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (0: CPU)")
    deploy.add_argument(
        "--cpu-threads", type=int, default=1, help="CPU threads per model call (CPUs reserved)"
    )
    deploy.add_argument("--compute-type", default="auto", help="int8, float16, ... (auto)")
    deploy.add_argument("--workers", type=int, default=1, help="model calls at once per replica")
    deploy.add_argument(
        "--final-latency-budget-ms",
        type=float,
        default=1500.0,
        help="finals a replica holds must be answered within this (sets max_ongoing_requests)",
    )
    deploy.set_defaults(run=run, ray_action=run_deploy)
    for name, help_text, action in (
        ("status", "show the application's replicas", run_status),
        ("delete", "remove the application from the cluster", run_delete),
    ):
        command = commands.add_parser(name, help=help_text)
        _add_cluster(command)
        command.set_defaults(run=run, ray_action=action)


def _add_cluster(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", required=True, help="the Ray cluster (host:port, or auto)")
    parser.add_argument("--app", default="streamscribe", help="the Serve application's name")
    parser.add_argument("--namespace", default="streamscribe", help="the Ray namespace")


def replica_config(args: argparse.Namespace) -> dict[str, Any]:
    local = LocalModelSettings(
        model=args.model,
        device="cuda" if args.num_gpus > 0 else "cpu",
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
    )
    scheduling = SchedulerSettings(workers=args.workers)
    return {
        "local_model": local.model_dump(mode="json"),
        "scheduling": scheduling.model_dump(mode="json"),
    }


def _autoscale(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        low, high = (int(part) for part in text.split(":"))
    except ValueError:
        raise UsageError(f"--autoscale takes MIN:MAX, got {text!r}") from None
    if not 0 <= low <= high or high < 1:
        raise UsageError(f"--autoscale {text}: need 0 <= MIN <= MAX and MAX >= 1")
    return low, high


def deployment_options(
    args: argparse.Namespace, max_ongoing: int, target_ongoing: int
) -> dict[str, Any]:
    """The ``Transcriber`` deployment's options."""
    actor: dict[str, Any] = {"num_cpus": args.cpu_threads * args.workers}
    if args.num_gpus > 0:
        actor["num_gpus"] = args.num_gpus
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": max_ongoing,
        # A replica being replaced or scaled down finishes what it holds: a few finals' worth.
        "graceful_shutdown_timeout_s": 5.0,
    }
    scale = _autoscale(args.autoscale)
    if scale is None:
        options["num_replicas"] = max(1, args.replicas)
    else:
        options["autoscaling_config"] = {
            "min_replicas": scale[0],
            "max_replicas": scale[1],
            "initial_replicas": min(max(args.replicas, scale[0], 1), scale[1]),
            "target_ongoing_requests": target_ongoing,
        }
    return options


def _connect(args: argparse.Namespace) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            "`streamscribe ray` needs Ray Serve: pip install 'streamscribe[ray]'"
        ) from exc
    try:
        ray.init(
            address=args.address,
            namespace=args.namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot join the Ray cluster at {args.address}: {exc}") from exc
    return ray


def run_deploy(args: argparse.Namespace) -> int:
    _autoscale(args.autoscale)  # a bad value fails before joining the cluster
    _connect(args)
    from ray import serve

    from server.runtime.ray_replica import Transcriber

    config = replica_config(args)
    serve.start(proxy_location="Disabled")  # gateways hold handles; no HTTP proxy is needed

    def run(max_ongoing: int, target_ongoing: int) -> Any:
        options = deployment_options(args, max_ongoing, target_ongoing)
        application = Transcriber.options(**options).bind(config)
        return serve.run(application, name=args.app, route_prefix=None)

    handle = run(FIRST_MAX_ONGOING, FIRST_MAX_ONGOING)
    info = handle.describe.remote().result()
    limits = replica_limits(info.final_cost_s, args.final_latency_budget_ms / 1000, info.batch_size)
    run(limits.max_ongoing_requests, limits.target_ongoing_requests)
    print(
        json.dumps(
            {
                "application": args.app,
                "model": info.model,
                "device": info.device,
                "final_cost_ms": round(info.final_cost_s * 1000, 1),
                "partial_cost_ms": round(info.partial_cost_s * 1000, 1),
                "max_ongoing_requests": limits.max_ongoing_requests,
                "target_ongoing_requests": limits.target_ongoing_requests,
            }
        )
    )
    return 0


def run_status(args: argparse.Namespace) -> int:
    _connect(args)
    from ray import serve

    status = serve.status().applications.get(args.app)
    if status is None:
        print(f"streamscribe ray: no application {args.app!r}", file=sys.stderr)
        return 1
    deployments = {
        name: {
            "status": str(d.status),
            "replicas": {str(state): count for state, count in d.replica_states.items()},
        }
        for name, d in status.deployments.items()
    }
    print(json.dumps({"application": args.app, "status": str(status.status), **deployments}))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    _connect(args)
    from ray import serve

    serve.delete(args.app)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.ray_action(args))
    except StreamScribeError as exc:
        print(f"streamscribe ray: {exc}", file=sys.stderr)
        return 2
