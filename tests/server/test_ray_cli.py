"""``streamscribe ray``: arguments and the deployment options they make, without a cluster."""

from __future__ import annotations

import pytest

from server import ray_cli
from server.core.errors import UsageError
from streamscribe.cli import build_parser, main


def deploy_args(*flags: str):
    return build_parser().parse_args(["ray", "deploy", "--address", "127.0.0.1:1", *flags])


def test_fixed_replicas_reserve_a_cpu_per_thread_and_hold_what_was_measured():
    args = deploy_args("--model", "tiny.en", "--replicas", "2", "--cpu-threads", "1")
    config = ray_cli.replica_config(args)
    assert config["local_model"]["model"] == "tiny.en"
    assert config["local_model"]["device"] == "cpu"
    options = ray_cli.deployment_options(args, max_ongoing=5, target_ongoing=2)
    assert options["num_replicas"] == 2
    assert options["max_ongoing_requests"] == 5
    assert options["ray_actor_options"] == {"num_cpus": 1}
    assert "autoscaling_config" not in options


def test_autoscaling_targets_the_measured_ongoing_requests_and_gpus_are_reserved():
    args = deploy_args("--autoscale", "1:8", "--num-gpus", "0.5", "--compute-type", "float16")
    assert ray_cli.replica_config(args)["local_model"]["device"] == "cuda"
    options = ray_cli.deployment_options(args, max_ongoing=20, target_ongoing=10)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 8,
        "initial_replicas": 1,
        "target_ongoing_requests": 10,
    }
    assert options["ray_actor_options"]["num_gpus"] == 0.5


@pytest.mark.parametrize("value", ["8", "a:b", "3:1", "0:0"])
def test_a_bad_autoscale_range_is_refused_before_joining_a_cluster(value, capsys):
    with pytest.raises(UsageError):
        ray_cli.deployment_options(deploy_args("--autoscale", value), 1, 1)
    assert main(["ray", "deploy", "--address", "127.0.0.1:1", "--autoscale", value]) == 2
    assert "--autoscale" in capsys.readouterr().err
