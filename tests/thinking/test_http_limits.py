"""A server that trickles its headers or sends a body without end costs one bounded attempt, not an
hour or the machine's memory (issue 22 class 8): ``timeout`` bounds the whole response, headers
included, and ``max_bytes`` its size. Against the real local completion server behind the fault proxy."""

from __future__ import annotations

import resource
import time

import pytest
from fault_proxy import FaultProxy
from hf_completion_server import HFCompletionServer

from m1_harness.thinking.engines.base import EngineError, GenRequest
from m1_harness.thinking.engines.server import ServerEngine


@pytest.fixture(scope="module")
def server(tiny_model):
    with HFCompletionServer(tiny_model, [{"id": "ckpt-1000", "root": "/ckpts/step-1000"}]) as srv:
        yield srv


@pytest.mark.parametrize(
    "fault, why",
    [
        ("slow_headers", "no whole response within 2s (ReadTimeout)"),  # main: held for hours (one byte per 0.2 s)
        ("huge", "response body past max_bytes=67108864 bytes"),  # main: gigabytes read until the timeout
    ],
)
def test_a_response_is_bounded_in_time_and_size(server, tiny_model, fault, why):
    with FaultProxy(server.base_url, always=fault, trickle_s=0.2) as proxy:
        eng = ServerEngine(str(tiny_model), proxy.base_url, served_model="ckpt-1000", timeout=2, max_retries=0)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        with pytest.raises(EngineError) as err:
            eng.generate([GenRequest(eng.tokenizer.encode("Hello"), 4)])
        took = time.monotonic() - start
        grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        eng.close()
    assert took < 4, took
    assert grew_mb < 500, grew_mb
    assert why in str(err.value)
    assert [outcome for _, _, outcome in proxy.log] == [fault]
