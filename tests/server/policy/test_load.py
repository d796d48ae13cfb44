"""Measured headroom: load levels with their hysteresis, admission, and the session's pacing."""

from __future__ import annotations

import pytest

from server.backends.fake import ScriptedTranscriber
from server.core.errors import LimitExceeded
from server.core.events import FinalText
from server.core.load_report import LoadLevel
from server.core.transcription import RequestKind, TranscribeRequest
from server.policy.load import LoadMonitor
from server.settings import LoadSettings
from tests.audio import bursts, pcm16
from tests.server.session_driver import Driver, energy_session

POLICY = LoadSettings(
    final_latency_budget_ms=1000, max_final_load=0.8, load_window_s=30, load_recover_s=10
)


def monitor_with_latencies(*latencies_s: float, at: float = 0.0) -> LoadMonitor:
    monitor = LoadMonitor(POLICY, workers=2)
    for latency_s in latencies_s:
        monitor.receive_final_latency(latency_s, at)
    return monitor


def test_a_quiet_server_is_normal_and_admits():
    monitor = monitor_with_latencies(0.2, 0.3, 0.25)
    assert monitor.report(1.0).level is LoadLevel.NORMAL
    monitor.admit(active_sessions=5, now=1.0)


def test_few_finals_say_nothing_about_latency():
    monitor = monitor_with_latencies(5.0, 5.0)
    assert monitor.final_latency_p95_ms() is None
    assert monitor.report(1.0).level is LoadLevel.NORMAL


def test_latency_past_half_the_budget_slows_partials_and_past_the_budget_pauses_them():
    slowed = monitor_with_latencies(0.6, 0.7, 0.65).report(1.0)
    assert slowed.level is LoadLevel.PARTIALS_SLOWED and "p95 650 ms" in slowed.reason
    paused = monitor_with_latencies(0.6, 1.4, 1.2).report(1.0)
    assert paused.level is LoadLevel.PARTIALS_PAUSED
    assert paused.as_dict()["partials"] == "paused"


def test_a_backlog_of_finals_pauses_partials():
    monitor = LoadMonitor(POLICY, workers=2)
    monitor.receive_queue(5)
    assert monitor.report(0.0).level is LoadLevel.PARTIALS_PAUSED


def test_one_slow_final_among_few_is_no_load():
    """A final decoded again (a loop on the short window, a failed threshold) is slow once;
    with few finals its latency would be the p95 and pause every session's partials."""
    assert monitor_with_latencies(0.2, 0.3, 2.1, 0.25).report(1.0).level is LoadLevel.NORMAL
    assert (
        monitor_with_latencies(0.2, 1.8, 2.1, 0.25).report(1.0).level is LoadLevel.PARTIALS_PAUSED
    )
    many = monitor_with_latencies(*[0.2] * 19, 2.1, 2.1)  # 21 finals: the p95 itself
    assert many.final_latency_p95_ms() == 2100


def test_levels_step_down_one_at_a_time_after_calm():
    monitor = monitor_with_latencies(2.0, 2.0, 2.0, at=0.0)
    assert monitor.report(0.0).level is LoadLevel.PARTIALS_PAUSED
    # The slow finals leave the window at 30 s; calm must then last recover_s per step.
    assert monitor.report(31.0).level is LoadLevel.PARTIALS_PAUSED
    assert monitor.report(40.0).level is LoadLevel.PARTIALS_PAUSED
    assert monitor.report(41.0).level is LoadLevel.PARTIALS_SLOWED
    assert monitor.report(50.0).level is LoadLevel.PARTIALS_SLOWED
    assert monitor.report(51.0).level is LoadLevel.NORMAL


def test_a_relapse_restarts_the_recovery_clock():
    monitor = monitor_with_latencies(2.0, 2.0, 2.0, at=0.0)
    monitor.report(31.0)  # calm starts
    for at in (35.0, 35.0, 35.0):
        monitor.receive_final_latency(2.0, at)
    assert monitor.report(39.0).level is LoadLevel.PARTIALS_PAUSED
    assert monitor.report(45.0).level is LoadLevel.PARTIALS_PAUSED


def test_paused_partials_refuse_new_sessions_naming_the_budget():
    monitor = monitor_with_latencies(2.0, 2.0, 2.0)
    with pytest.raises(LimitExceeded) as refused:
        monitor.admit(active_sessions=3, now=1.0)
    assert refused.value.code == "server_overloaded"
    assert refused.value.limit == "final_latency_budget_ms"


def test_a_server_with_no_session_admits_whatever_the_window_remembers():
    """One long session ended with slow finals: the next session is the only one, and is
    served at once (the window's figures are of sessions that are gone)."""
    monitor = monitor_with_latencies(2.8, 2.9, 3.0)
    assert monitor.report(1.0).level is LoadLevel.PARTIALS_PAUSED
    monitor.admit(active_sessions=0, now=1.0)
    with pytest.raises(LimitExceeded):
        monitor.admit(active_sessions=1, now=1.0)


def test_the_finals_of_a_closed_session_refuse_nobody():
    """A burst of sessions ended with slow finals; the next burst's second session is judged
    by the finals of sessions still open, not by those of the sessions that left."""
    monitor = LoadMonitor(POLICY, workers=2)
    for session_id in ("a", "b", "c"):
        monitor.receive_final_latency(2.5, 1.0, session_id)
        monitor.receive_final_run(1.9, 1.0, session_id)
    with pytest.raises(LimitExceeded):
        monitor.admit(active_sessions=1, now=2.0)
    for session_id in ("a", "b", "c"):
        monitor.forget_session(session_id)
    monitor.admit(active_sessions=1, now=2.0)
    for _ in range(3):
        monitor.receive_final_latency(2.5, 3.0, "d")  # an open session's slow finals still count
    with pytest.raises(LimitExceeded):
        monitor.admit(active_sessions=1, now=4.0)


def test_admission_judges_the_load_now_while_partials_recover_slowly():
    monitor = monitor_with_latencies(2.0, 2.0, 2.0, at=0.0)
    assert monitor.report(0.0).level is LoadLevel.PARTIALS_PAUSED
    # The slow finals left the window at 30 s: partials stay paused for load_recover_s more,
    # new sessions are admitted at once.
    assert monitor.report(31.0).level is LoadLevel.PARTIALS_PAUSED
    monitor.admit(active_sessions=3, now=31.0)


def test_admission_projects_the_finals_load_of_one_more_session():
    monitor = LoadMonitor(POLICY, workers=2)
    # 30 s of window, 2 workers: 60 worker-seconds. Finals took 42 s: load 0.7.
    for index in range(42):
        monitor.receive_final_run(1.0, float(index) * 0.7 + 1)
    monitor.report(30.0)
    monitor.admit(active_sessions=0, now=30.0)  # nothing measured per session yet
    with pytest.raises(LimitExceeded) as refused:
        monitor.admit(active_sessions=6, now=30.0)  # 0.7 * 7 / 6 = 0.82
    assert refused.value.limit == "max_final_load"
    monitor.admit(active_sessions=20, now=30.0)  # 0.7 * 21 / 20 = 0.735


def test_a_crowd_is_admitted_as_fast_as_its_sessions_show_their_load():
    policy = LoadSettings(admission_burst=3, load_window_s=30)
    monitor = LoadMonitor(policy, workers=2)
    for active in range(3):  # three arrive within a second, no final yet: unknown, not high
        monitor.admit(active_sessions=active, now=0.1 * active)
    with pytest.raises(LimitExceeded) as refused:
        monitor.admit(active_sessions=3, now=0.5)
    assert refused.value.limit == "admission_burst"
    monitor.receive_final_run(0.2, 4.0, "first")  # one of them shows its load
    monitor.admit(active_sessions=3, now=4.1)
    with pytest.raises(LimitExceeded):
        monitor.admit(active_sessions=4, now=4.2)  # three unknown again


def test_sessions_that_never_spoke_stop_counting_as_unknown_after_the_window():
    """Quiet listeners of a meeting cost nothing: once they were admitted a window ago, a new
    session is judged as if they were measured."""
    monitor = LoadMonitor(LoadSettings(admission_burst=2, load_window_s=30), workers=2)
    monitor.admit(active_sessions=0, now=0.0)
    monitor.admit(active_sessions=1, now=0.0)
    with pytest.raises(LimitExceeded):
        monitor.admit(active_sessions=2, now=1.0)
    monitor.admit(active_sessions=2, now=31.0)


def test_the_projection_counts_unmeasured_sessions_at_the_measured_share():
    monitor = LoadMonitor(POLICY, workers=2)
    for active in (0, 1):
        monitor.admit(active_sessions=active, now=0.0)
    # 29 s measured, 2 workers: 58 worker-seconds; a and b took 21.6 s of finals: load 0.37.
    for index in range(24):
        monitor.receive_final_run(0.9, 0.9 + index, "ab"[index % 2])
    for active in (2, 3):
        monitor.admit(active_sessions=active, now=29.0)  # two new ones, not yet measured
    with pytest.raises(LimitExceeded) as refused:
        monitor.admit(active_sessions=4, now=29.0)  # 0.37 * 5 / 2 = 0.93, not 0.37 * 5 / 4
    assert refused.value.limit == "max_final_load"


def test_admission_can_be_switched_off():
    policy = LoadSettings(final_latency_budget_ms=1000, admission=False)
    monitor = LoadMonitor(policy, workers=1)
    for _ in range(3):
        monitor.receive_final_latency(9.0, 0.0)
    monitor.admit(active_sessions=100, now=1.0)


def partial_requests(driver: Driver) -> list[TranscribeRequest]:
    return [
        event
        for event in driver.events
        if isinstance(event, TranscribeRequest) and event.kind is RequestKind.PARTIAL
    ]


def test_sessions_pace_partials_to_the_load_and_never_drop_finals():
    speech = pcm16(bursts(500, 6000, 1000))
    counts = {}
    for level in LoadLevel:
        driver = Driver(energy_session(), ScriptedTranscriber(["one two three four five"]))
        driver.answer(driver.session.receive_load(level))
        driver.feed(speech, 640)
        driver.close()
        counts[level] = len(partial_requests(driver))
        assert [final.text for final in driver.of_type(FinalText)] == ["one two three four five"]
    assert counts[LoadLevel.PARTIALS_PAUSED] == 0
    assert 0 < counts[LoadLevel.PARTIALS_SLOWED] < counts[LoadLevel.NORMAL]
