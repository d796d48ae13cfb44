"""The model side of the Ray Serve backend: the ``Transcriber`` deployment.

Each replica loads the model once (faster-whisper, as ``--backend local`` does) and runs the
server's own scheduler in front of it, so what one server does for its sessions a replica does
for every gateway's: finals before partials, stale partials dropped, requests of different
sessions batched into one model call where the model batches (on a GPU). Gateways
(``server.backends.ray_gateway``) send whole requests; session ids arrive prefixed with the
gateway's id, so two gateways' sessions never share a queue slot.

Imported by Ray on each replica and by ``streamscribe ray deploy``; needs the ``ray`` extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import numpy as np

from server.backends.local import FasterWhisperTranscriber
from server.core.errors import UsageError
from server.core.transcription import DecodeOptions, TranscribeRequest, Transcription
from server.core.units import STREAM_RATE_HZ
from server.runtime.memory_trim import MemoryTrimmer, glibc_malloc_trim
from server.runtime.scheduler import InferenceScheduler
from server.settings import LocalModelSettings, SchedulerSettings

try:
    from ray import serve
except ImportError as exc:  # pragma: no cover - the message is the point
    raise UsageError("the ray backend needs Ray Serve: pip install 'streamscribe[ray]'") from exc

DEPLOYMENT_NAME = "Transcriber"
# Seconds of audio the cost of a final is measured on at start-up: an utterance of dictation.
CALIBRATION_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """What a replica tells gateways and ``streamscribe ray deploy`` about itself."""

    model: str
    multilingual: bool
    device: str
    batch_size: int
    final_cost_s: float  # a final of CALIBRATION_S seconds, alone, on this replica
    partial_cost_s: float


class TranscriberReplica:
    """One replica: ``config`` holds the ``local_model`` and ``scheduling`` settings groups."""

    def __init__(self, config: dict[str, Any]) -> None:
        local = LocalModelSettings.model_validate(config["local_model"])
        scheduling = SchedulerSettings.model_validate(config["scheduling"])
        self.transcriber = FasterWhisperTranscriber.from_settings(local, workers=scheduling.workers)
        self.transcriber.load()
        self.info = self._measure(local.model)
        self.scheduler = InferenceScheduler(self.transcriber, scheduling)
        self.trimmer = MemoryTrimmer(self.scheduler, scheduling.memory_trim_s, glibc_malloc_trim())
        self._started = False
        self._background: list[asyncio.Task[None]] = []

    def _measure(self, model: str) -> ReplicaInfo:
        """Time a final and a partial on this replica's hardware (after the model's warm-up)."""
        audio = np.random.default_rng(1).normal(0, 0.01, int(CALIBRATION_S * STREAM_RATE_HZ))
        samples = audio.astype(np.float32)
        options = DecodeOptions(language="en")
        costs = []
        for final in (True, False):
            started = time.perf_counter()
            self.transcriber.transcribe(samples, options, final=final)
            costs.append(time.perf_counter() - started)
        return ReplicaInfo(
            model=model,
            multilingual=self.transcriber.multilingual,
            device=self.transcriber.loaded_device,
            batch_size=self.transcriber.suggested_batch_size,
            final_cost_s=costs[0],
            partial_cost_s=costs[1],
        )

    async def _start(self) -> None:
        # The scheduler's workers are tasks of the replica's event loop, which the constructor
        # does not run on.
        if not self._started:
            self._started = True
            await self.scheduler.start(load=False)
            self._background.append(asyncio.create_task(self.trimmer.run()))

    async def transcribe(self, request: TranscribeRequest) -> Transcription | None:
        """The answer, its ``queue_ms`` the wait in this replica; ``None``: a partial this
        replica's queue dropped (superseded, or no room)."""
        await self._start()
        future = self.scheduler.submit(request)
        try:
            # Shielded: when the gateway gives up, Ray cancels this call, not the queue's job.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                return None  # the queue dropped it
            self.scheduler.cancel(request.session_id, request.request_id)
            raise

    def describe(self) -> ReplicaInfo:
        return self.info

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self.scheduler.queued,
            "finals_queued": self.scheduler.finals_queued,
            **self.scheduler.stats.as_dict(),
        }

    def check_health(self) -> None:
        """Ray Serve restarts a replica whose check raises."""
        if self.scheduler.load_error is not None:
            raise RuntimeError(f"model failed: {self.scheduler.load_error}")


Transcriber = serve.deployment(name=DEPLOYMENT_NAME)(TranscriberReplica)


def build_app(args: dict[str, Any]) -> Any:
    """The application for a declarative Serve config (KubeRay's ``RayService``):
    ``import_path: server.runtime.ray_replica:build_app``, ``args`` holding the ``local_model``
    and ``scheduling`` groups."""
    return Transcriber.bind(args)
