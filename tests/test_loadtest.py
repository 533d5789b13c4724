"""The load tester without a server: loopback only, bounded in count and time, failures counted."""

import threading
import time

import numpy as np
import pytest

from amad.data.preprocess import Preprocess
from amad.errors import AmadError
from amad.serving.loadtest import check_loopback, run_level

REQUEST = {"tokens": np.zeros((1, 4), np.int64)}  # a batch of one: what a request predicts for


def test_only_loopback_addresses_are_load_tested():
    for url in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        check_loopback(url)
    for url in ("10.0.0.5:8000", "example.com:80", "0.0.0.0:8000"):
        with pytest.raises(AmadError, match="not a loopback address"):
            check_loopback(url)


def test_a_level_counts_requests_failures_and_stops_at_max_requests():
    calls = []
    lock = threading.Lock()

    def make_sender():
        def send(request):
            with lock:
                calls.append(request)
                count = len(calls)
            if count % 5 == 0:
                raise ConnectionRefusedError("[Errno 111] Connection refused")

        return send

    result = run_level(make_sender, [REQUEST], concurrency=4, duration=30.0, max_requests=50)
    assert result["requests"] == 50 == len(calls)  # bounded by count long before the 30 s
    assert result["failed"] == 10 and result["errors"] == ["[Errno 111] Connection refused"]
    assert result["throughput_rps"] > 0 and result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]


def test_a_level_ends_at_its_duration_whatever_the_server_does():
    def make_sender():
        def send(request):
            time.sleep(0.05)
            raise TimeoutError("timed out")  # what a dead server looks like with a client timeout

        return send

    start = time.perf_counter()
    result = run_level(make_sender, [REQUEST], concurrency=3, duration=0.5, max_requests=10_000)
    assert time.perf_counter() - start < 2.0
    assert result["failed"] == result["requests"] > 0 and result["p50_ms"] is None and result["throughput_rps"] == 0


def test_a_client_that_cannot_start_is_a_failure_not_a_crash():
    def make_sender():
        raise OSError("no route")

    result = run_level(make_sender, [REQUEST], concurrency=2, duration=0.2, max_requests=10)
    assert result["failed"] == 2 and result["requests"] == 2


def test_token_count_sees_past_the_context():
    preprocess = Preprocess(image_size=24, context_length=8)
    assert preprocess.token_count("a red circle") == 5  # start, 3 words, end
    assert preprocess.token_count("one two three four five six seven eight") == 10 > preprocess.context_length
