"""The Ray Serve backend on a real local Ray cluster: ``ray start --head`` with this machine's
CPUs, ``streamscribe ray deploy`` of two tiny.en replicas with one thread each, gateways started
with ``streamscribe serve --backend ray``, real speech streamed through them.

The tests of this module share one cluster and run in order: the last one deletes the
deployment."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from client.stream import stream_pcm
from server.settings import ServerSettings
from server.web.app import create_app
from tests.support import (
    ENGLISH_FILES,
    ROOT,
    TIMEOUT_S,
    free_port,
    references,
    require,
    require_model,
    run,
    running_server,
    server_process,
    shared_file,
    spoken,
    wer,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]

ENGLISH = list(ENGLISH_FILES)
APP = "streamscribe"
# What is tested is the backend, not the load policy: on a slow or busy machine the policy
# would rightly pause partials and refuse sessions.
DEPLOY = [
    *(sys.executable, "-m", "streamscribe", "ray", "deploy", "--model", "tiny.en"),
    *("--replicas", "2", "--cpu-threads", "1", "--compute-type", "int8"),
]
CALM = ["--admission", "false", "--final-latency-budget-ms", "60000", "--max-final-load", "1.0"]


def ray_command() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


@pytest.fixture(scope="module")
def cluster():
    """The cluster's address, with the deployment ready; this process joins it as a driver."""
    require(importlib.util.find_spec("ray") is not None, "Ray is not installed (extra: ray)")
    require_model("tiny.en")
    import ray

    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [
        ray_command(),
        "start",
        "--head",
        f"--port={address.split(':')[1]}",
        f"--num-cpus={os.cpu_count() or 2}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--object-store-memory=200000000",
    ]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=TIMEOUT_S * 4)
    try:
        deploy = subprocess.run(
            [*DEPLOY, "--address", address],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=TIMEOUT_S * 10,
        )
        assert deploy.returncode == 0, deploy.stderr[-3000:]
        report = json.loads(deploy.stdout.strip().splitlines()[-1])
        assert report["model"] == "tiny.en" and report["max_ongoing_requests"] >= 2, report
        ray.init(address=address, namespace="streamscribe-tests", log_to_driver=False)
        yield address
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        subprocess.run([ray_command(), "stop", "--force"], capture_output=True, env=env)


@contextlib.contextmanager
def gateway(address: str, *flags: str):
    process, port = server_process(
        "--backend",
        "ray",
        "--ray-address",
        address,
        "--model",
        "tiny.en",
        *CALM,
        *flags,
        capture=False,
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(TIMEOUT_S)


def errors(result) -> list:
    return result.of_type("error")


def replicas() -> list[str]:
    import ray

    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{APP}#")
    ]


def running_replicas() -> int:
    from ray import serve
    from ray.serve._private.common import ReplicaState

    application = serve.status().applications.get(APP)
    if application is None:
        return 0
    states = application.deployments["Transcriber"].replica_states
    return states.get(ReplicaState.RUNNING, 0)


@pytest.fixture(autouse=True)
def both_replicas_running(cluster):
    """Each test starts with the deployment's two replicas running and named: a replica a test
    killed is replaced by Serve in the background, and the next test killing "both" found only
    one once (the other was still starting)."""
    deadline = time.monotonic() + TIMEOUT_S * 4
    while not (running_replicas() == 2 and len(replicas()) == 2):
        assert time.monotonic() < deadline, "Serve did not bring back two running replicas"
        time.sleep(0.2)  # polling Serve's status: it has no event to wait on


@pytest.fixture(scope="module")
def single_server_wer():
    """The same model, settings and audio on one StreamScribe process."""
    require_model("tiny.en")
    settings = ServerSettings(
        model="tiny.en",
        compute_type="int8",
        cpu_threads=1,
        admission=False,
        final_latency_budget_ms=60_000,
        max_final_load=1.0,
    )
    with running_server(create_app(settings)) as server:
        result = run(stream_pcm(server.ws_url, spoken(ENGLISH), speed=2.0))
    assert not errors(result)
    return len(result.finals), wer(references(ENGLISH), result.text)


def test_a_gateway_transcribes_like_one_server_and_serves_rest(cluster, single_server_wer):
    finals, single_wer = single_server_wer
    with gateway(cluster) as port:
        result = run(stream_pcm(f"ws://127.0.0.1:{port}/v1/stream", spoken(ENGLISH), speed=2.0))
        audio = shared_file("en_goforward.wav").read_bytes()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/audio/transcriptions",
            files={"file": ("a.wav", audio)},
            data={"model": "tiny.en"},
            timeout=TIMEOUT_S,
        )
    assert not errors(result)
    assert {final["backend"] for final in result.finals} == {"ray"}
    assert len(result.finals) == finals
    assert wer(references(ENGLISH), result.text) <= single_wer + 0.01, result.text
    assert answer.status_code == 200
    assert wer(references(["en_goforward.wav"]), answer.json()["text"]) <= 0.2


def busiest_first() -> list[str]:
    """The replicas, those holding more requests first."""
    import ray

    def ongoing(name: str) -> int:
        actor = ray.get_actor(name, namespace="serve")
        return int(ray.get(actor.get_num_ongoing_requests.remote(), timeout=TIMEOUT_S))

    return sorted(replicas(), key=ongoing, reverse=True)


def kill_at_first_stop(how_many: int, killed: list[str]):
    """An event callback: when the first utterance has ended (its final just asked for), kill
    ``how_many`` replicas, the busiest first. Serve starts others in their place."""
    import ray

    def on_event(event: dict) -> None:
        if event["type"] == "speech.stopped" and not killed:
            killed.extend(busiest_first()[:how_many])
            for name in killed:
                ray.kill(ray.get_actor(name, namespace="serve"))

    return on_event


def test_killing_a_replica_mid_stream_loses_no_utterance(cluster, single_server_wer):
    finals, single_wer = single_server_wer
    killed: list[str] = []
    with gateway(cluster) as port:
        url = f"ws://127.0.0.1:{port}/v1/stream"
        on_event = kill_at_first_stop(1, killed)
        result = run(stream_pcm(url, spoken(ENGLISH), speed=2.0, on_event=on_event))
    assert len(killed) == 1 and killed[0] not in replicas()
    assert not errors(result), errors(result)
    assert len(result.finals) == finals
    assert wer(references(ENGLISH), result.text) <= single_wer + 0.01, result.text


def test_a_final_whose_replicas_all_died_waits_for_their_replacements(cluster):
    """Both replicas die while the final is being decoded: the final comes, only later, once
    Serve has started new ones (within the final's deadline). Whether the gateway had to retry
    depends on where the kill lands: a request in flight fails and is retried; one Serve's
    router had not yet sent waits in the router for the replacements (so the retry count is
    not asserted: once, in a run, the kill landed between requests)."""
    killed: list[str] = []
    names = ["en_goforward.wav"]
    with gateway(cluster, "--ray-deadline-s", "60") as port:
        url = f"ws://127.0.0.1:{port}/v1/stream"
        on_event = kill_at_first_stop(2, killed)
        result = run(stream_pcm(url, spoken(names), speed=None, on_event=on_event))
    assert len(killed) == 2 and not set(killed) & set(replicas())
    assert not errors(result), errors(result)
    assert wer(references(names), result.text) <= 0.2, result.text


def test_a_second_gateway_shares_the_same_replicas(cluster):
    halves = [ENGLISH[:2], ENGLISH[2:]]
    with gateway(cluster) as first, gateway(cluster) as second:

        async def both():
            return await asyncio.gather(
                *(
                    stream_pcm(f"ws://127.0.0.1:{port}/v1/stream", spoken(names), speed=2.0)
                    for port, names in zip((first, second), halves, strict=True)
                )
            )

        results = run(both())
    for result, names in zip(results, halves, strict=True):
        assert not errors(result)
        assert {final["backend"] for final in result.finals} == {"ray"}
        assert wer(references(names), result.text) <= 0.15, result.text
    assert len(replicas()) == 2  # both gateways were served by the deployment's two replicas


def test_with_every_replica_gone_finals_fail_clearly_or_come_from_the_fallback(cluster):
    from ray import serve

    quick = ("--ray-timeout-s", "1", "--ray-deadline-s", "3")
    names = ["en_goforward.wav"]
    with (
        gateway(cluster, *quick) as plain,
        gateway(cluster, *quick, "--ray-fallback", "local", "--compute-type", "int8") as backed,
    ):
        serve.delete(APP)

        async def both():
            return await asyncio.gather(
                *(
                    stream_pcm(f"ws://127.0.0.1:{port}/v1/stream", spoken(names), speed=None)
                    for port in (plain, backed)
                )
            )

        failed, answered = run(both())
    failures = errors(failed)
    assert failures and {error["code"] for error in failures} == {"transcription_failed"}
    assert failed.of_type("session.closed")
    assert not errors(answered)
    assert {final["backend"] for final in answered.finals} == {"local"}
    assert all("Ray replica" in final["failover_reason"] for final in answered.finals)
    assert wer(references(names), answered.text) <= 0.2, answered.text
