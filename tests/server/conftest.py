"""Fixtures shared by the remote backend's tests: one fault-injecting server per module, reset
before each test."""

from __future__ import annotations

import pytest

from tests.server.fault_remote import FaultyRemote
from tests.support import running_server


@pytest.fixture(scope="module")
def remote():
    faulty = FaultyRemote()
    with running_server(faulty.app) as running:
        faulty.url = running.http_url + "/v1"
        yield faulty


@pytest.fixture
def fresh(remote):
    remote.requests.clear()
    remote.set_schedule([])
    remote.models_status = 200
    return remote
