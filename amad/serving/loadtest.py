"""Drive a Triton server with concurrent requests and measure it.

A request is one prediction of the task's predictor, end to end, over the served graphs (VQA: one
call; retrieval: the image and the text encoder; a generative task: its encode call and every
decode step), for one sample of the task's validation data (batch of one), the samples in turn.
For each concurrency level, that many threads (one ``tritonclient`` each: clients are not
thread-safe) send requests back to back for ``duration`` seconds (and at most
``max_requests`` in all). A request that
fails (error response, refused connection, timeout) is counted, not retried; every call has a
``timeout``, so a server that dies mid-load makes the test report errors and end, never hang.
Requests go only to the loopback address.

Result per level: requests, failed, throughput (successful requests per second), p50 / p90 / p99
latency of the successful ones (ms).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from amad.errors import AmadError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_loopback(url: str) -> None:
    """``url`` (``host:port``) must name the loopback address: the load test floods what it targets."""
    host = urlsplit(f"//{url}").hostname
    if host not in LOOPBACK_HOSTS:
        raise AmadError(f"loadtest: {url} is not a loopback address; requests go only to {', '.join(LOOPBACK_HOSTS)}")


def validation_requests(export_dir: Path, data_dir: Path, count: int = 32) -> list[dict]:
    """The first ``count`` samples of the task's validation split, each a batch of one, preprocessed
    as the export's metadata says."""
    from torch.utils.data import default_collate

    from amad.contracts.task import get_task
    from amad.serving.server import served_graphs, served_metadata

    metadata = served_metadata(next(iter(served_graphs(export_dir).values())))
    task = get_task(metadata["amad.task"], f"{export_dir}: amad.task")
    preprocess = task.preprocess_from_metadata(metadata)  # the export's own tokenizers
    dataset = task.dataset(Path(data_dir), "val", preprocess, task.read_state(Path(data_dir)))
    if len(dataset) == 0:
        raise AmadError(f"{data_dir}: the validation split is empty: the load test draws its requests from it")
    return [default_collate([dataset[index]]) for index in range(min(count, len(dataset)))]


def predictor_sender(url: str, timeout: float, export_dir: Path) -> Callable[[dict], None]:
    """A function running one prediction through the server with its own client (one thread only)."""
    import torch

    from amad.contracts.task import get_task
    from amad.serving.client import server_source

    source = server_source(url, export_dir=export_dir, timeout=timeout)
    predictor = get_task(source.task_name).predictor(source.graphs)

    def send(batch: dict) -> None:
        with torch.inference_mode():
            predictor(batch)

    return send


def run_level(
    make_sender: Callable[[], Callable[[Any], None]],
    requests: list[Any],
    concurrency: int,
    duration: float,
    max_requests: int,
) -> dict[str, Any]:
    """``concurrency`` threads sending ``requests`` in turn for ``duration`` seconds (``max_requests`` at most)."""
    latencies: list[float] = []
    failures: list[str] = []
    issued = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker(offset: int) -> None:
        nonlocal issued
        try:
            send = make_sender()
        except Exception as error:
            with lock:
                failures.append(f"client: {error}")
            return
        index = offset
        while time.perf_counter() < deadline:
            with lock:
                if issued >= max_requests:
                    return
                issued += 1
            start = time.perf_counter()
            try:
                send(requests[index % len(requests)])
            except Exception as error:
                with lock:
                    failures.append(str(error).splitlines()[0][:200] if str(error) else type(error).__name__)
            else:
                with lock:
                    latencies.append(time.perf_counter() - start)
            index += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3
    percentiles = {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) if len(ms) else None for q in (50, 90, 99)}
    return {
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "throughput_rps": round(len(latencies) / elapsed, 2),
        **percentiles,
        "errors": sorted(set(failures))[:5],
    }


def load_test(
    url: str,
    export_dir: Path,
    requests: list[dict],
    levels: list[int],
    *,
    duration: float,
    timeout: float,
    max_requests: int,
    log=print,
) -> dict[str, dict]:
    """Every concurrency level in turn against the server at ``url`` (loopback only)."""
    check_loopback(url)
    results = {}
    for level in levels:
        sender = functools.partial(predictor_sender, url, timeout, export_dir)
        results[str(level)] = run_level(sender, requests, level, duration, max_requests)
        row = results[str(level)]
        log(
            f"concurrency {level}: {row['throughput_rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['failed']} failed of {row['requests']}"
        )
    return results
