"""The loss-cost benchmark (``make bench``) on tiny shapes: every case is timed and compared with the layer."""

from __future__ import annotations

import json

import torch

from amad.bench import timing
from research import loss_bench as losses


def test_loss_bench_times_every_case_in_interleaved_rounds(tmp_path):
    calls: list[str] = []
    cases = {losses.LAYER: lambda: calls.append("layer"), "a loss": lambda: calls.append("loss")}
    times = timing.interleaved_ms(cases, warmup=1, repeats=3)
    assert calls == ["layer", "loss"] + ["layer", "loss"] * 3  # warm-up, then one of each per round
    assert {name: len(ms) for name, ms in times.items()} == {losses.LAYER: 3, "a loss": 3}

    out = tmp_path / "bench.json"
    argv = ["--batch", "2", "--tokens", "9", "--teacher-width", "24", "--student-width", "16", "--relation-heads", "4"]
    threads = torch.get_num_threads()
    report = losses.main([*argv, "--warmup", "0", "--repeats", "2", "--threads", "1", "--json", str(out)])
    assert report["threads"] == 1 and torch.get_num_threads() == threads  # restored afterwards
    results = report["results"]
    assert results[losses.LAYER]["fraction_of_layer"] == 1.0
    assert {"amad_loss[kl]", "amad_loss[token]", "one_to_one_loss[truncate]", "relation_loss[R=4]"} <= set(results)
    assert all(r["ms"] > 0 and r["fraction_of_layer"] > 0 for r in results.values())
    assert json.loads(out.read_text())["results"].keys() == results.keys()
