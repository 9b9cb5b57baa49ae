"""Request traces in their released formats (Azure LLM 2023/2024, BurstGPT, Mooncake) and request lists
(CSV, Parquet): the samples read to the values in the files, the clock is rebased, start, speedup and
until apply, and malformed rows stop a strict load with their file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator.errors import CapsimError
from simulator.serving.spec import TraceRequests
from simulator.serving.traces import load_requests

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "traces" / "serving"


def load(path, fmt, **options):
    return load_requests(TraceRequests(kind="trace", service="s", format=fmt, path=path, **options), SAMPLES)


def test_samples_read_to_their_values():
    azure23 = load("azure_llm_2023_conv.csv", "azure")
    # 18:15:47.4677900 then 18:15:49.9097155: the first at 0, the second 2.4419255 s later
    assert azure23["arrival_s"].iloc[:2].tolist() == pytest.approx([0.0, 2.4419255], abs=1e-9)
    assert azure23["prompt_tokens"].iloc[:2].tolist() == [161, 1027]
    assert azure23["output_tokens"].iloc[:2].tolist() == [74, 75]
    azure24 = load("azure_llm_2024_code.csv", "azure")  # timestamps with +00:00
    assert azure24["arrival_s"].iloc[1] == pytest.approx(3.229125 - 0.7872, abs=1e-9)
    burst = load("burstgpt.csv", "burstgpt")
    assert burst["arrival_s"].iloc[:2].tolist() == [0.0, 13.0] and burst["prompt_tokens"].iloc[0] == 80
    moon = load("mooncake_conversation.jsonl", "mooncake")  # milliseconds
    assert moon["arrival_s"].iloc[:3].tolist() == pytest.approx([0.0, 2.442, 2.496])
    assert moon["prompt_tokens"].iloc[1] == 8216
    plain = load("requests.csv", "csv")  # seconds from the run's start, not rebased
    assert plain["arrival_s"].iloc[0] == 0.787
    for frame in (azure23, azure24, burst, moon, plain):
        assert len(frame) == 12 and list(frame.columns) == ["arrival_s", "prompt_tokens", "output_tokens"]
        assert frame["prompt_tokens"].dtype == np.int64


def test_start_speedup_and_until():
    base = load("azure_llm_2023_conv.csv", "azure")["arrival_s"].to_numpy()
    moved = load("azure_llm_2023_conv.csv", "azure", start="1h", speedup=2.0, until=3600.0 + base[6] / 2)
    assert moved["arrival_s"].tolist() == pytest.approx((3600.0 + base[:6] / 2).tolist())


def test_a_trace_runs_in_a_scenario(tmp_path):
    scenario = {"name": "trace", "seed": 1,
                "cluster": {"pools": [{"name": "main", "device": "h100-sxm", "nodes": 1, "devices_per_node": 8}]},
                "services": [{"name": "chat", "model": "llama3-8b", "pool": "main", "replicas": 2,
                              "scheduler": {"max_batched_tokens": 16384}}],
                "requests": [{"kind": "trace", "service": "chat", "format": "mooncake",
                              "path": str(SAMPLES / "mooncake_conversation.jsonl")},
                             {"kind": "trace", "service": "chat", "format": "burstgpt", "path": str(SAMPLES / "burstgpt.csv"),
                              "start": 5.0}]}
    res = simulator.run(scenario, progress=False)
    assert len(res.requests) == 24 and (res.requests["arrival_s"].diff().dropna() >= 0).all()
    assert res.summary["services"]["chat"]["requests"] == 24


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


@pytest.mark.parametrize(("fmt", "text", "where", "message"), [
    ("azure", AZURE + "2023-11-16 18:15:46.68,10,5\n2023-11-16 18:15:47.00,10\n", "line 3", "expected 3 fields"),
    ("azure", AZURE + "2023-11-16 18:15:46.68,10,5\nyesterday,10,5\n", "line 3", "expected a date and time"),
    ("azure", AZURE + "2023-11-16 18:15:46.68,-10,5\n", "line 2", "'ContextTokens': expected a whole number >= 0"),
    ("azure", AZURE + "2023-11-16 18:15:46.68,10,9223372036854775808\n", "line 2", r"< 2\^63"),
    ("azure", AZURE + "2023-11-16 18:15:46.68,10,2.5\n", "line 2", "whole number"),
    ("burstgpt", BURST + "1,ChatGPT,10,5,15,Conversation log\ninf,ChatGPT,10,5,15,Conversation log\n", "line 3",
     "'Timestamp': expected a number >= 0"),
    ("burstgpt", BURST + "1,ChatGPT,nan,5,15,Conversation log\n", "line 2", "'Request tokens'"),
    ("burstgpt", BURST + "-1,ChatGPT,10,5,15,Conversation log\n", "line 2", "'Timestamp'"),
    ("csv", "arrival_s,prompt_tokens,output_tokens\n0.5,10,5\n1.0,10,0\n", "line 3", "'output_tokens': expected a whole number >= 1"),
    ("csv", "arrival_s,prompt_tokens,output_tokens\n0.5,10,5\n1.0,10,5", "line 3", "cut short"),
    ("mooncake", '{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 5, "input_length": 10}\n',
     "line 2", "missing key\\(s\\) output_length"),
    ("mooncake", '{"timestamp": 0, "input_length": 10, "output_length": 5}\nnot json\n', "line 2", "JSON object"),
    ("mooncake", '{"timestamp": 0, "input_length": 100000000000000000000, "output_length": 5}\n', "line 1", r"< 2\^63"),
    ("mooncake", '{"timestamp": NaN, "input_length": 10, "output_length": 5}\n', "line 1", "milliseconds >= 0"),
    ("mooncake", '{"timestamp": 1, "input_length": -3, "output_length": 5}\n', "line 1", "'input_length'"),
    ("mooncake", '{"timestamp": 1, "input_length": true, "output_length": 5}\n', "line 1", "'input_length'"),
])
def test_a_malformed_row_stops_a_strict_load_with_its_line(tmp_path, fmt, text, where, message):
    path = write(tmp_path, "trace.jsonl" if fmt == "mooncake" else "trace.csv", text)
    with pytest.raises(CapsimError, match=message) as info:
        load(path, fmt)
    assert info.value.where == where and info.value.source == str(path)
    assert "\n" not in str(info.value)


def test_lenient_loads_skip_and_count_and_failed_requests_are_left_out(tmp_path):
    path = write(tmp_path, "trace.csv", BURST + "1,ChatGPT,10,5,15,Conversation log\n2,ChatGPT,oops,5,15,API log\n"
                 "3,GPT-4,10,0,10,Conversation log\n4,ChatGPT,20,7,27,Conversation log\n")
    with pytest.warns(UserWarning) as caught:
        frame = load(path, "burstgpt", strict=False)
    text = " ".join(str(w.message) for w in caught)
    assert "1 malformed row(s) skipped" in text and "1 request(s) with 0 prompt or 0 output tokens" in text
    assert frame["arrival_s"].tolist() == [0.0, 3.0] and frame["output_tokens"].tolist() == [5, 7]


def test_a_byte_order_mark_and_gzip_are_read(tmp_path):
    import gzip

    bom = write(tmp_path, "bom.csv", ("\ufeff" + AZURE + "2023-11-16 18:15:46.5,10,5\n2023-11-16 18:15:47,20,6\n")
                .encode("utf-8"), "wb")
    assert load(bom, "azure")["arrival_s"].tolist() == [0.0, 0.5]
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"timestamp": 1500, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'))
    assert load(packed, "mooncake")["prompt_tokens"].tolist() == [10]


def test_parquet_rows_are_named_by_number(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "prompt_tokens": [5, 6, 7], "output_tokens": [1, -2, 3]}).to_parquet(path)
    with pytest.raises(CapsimError, match="'output_tokens': expected a whole number >= 1") as info:
        load(path, "parquet")
    assert info.value.where == "row 2"
    pd.DataFrame({"arrival_s": [0.0, float("inf")], "prompt_tokens": [5, 6], "output_tokens": [1, 2]}).to_parquet(path)
    with pytest.raises(CapsimError, match="'arrival_s'"):
        load(path, "parquet")
    with pytest.raises(CapsimError, match="no such request trace"):
        load(tmp_path / "nope.csv", "csv")


def test_mooncake_hash_ids_are_ignored_and_order_kept(tmp_path):
    rows = [{"timestamp": 3000, "input_length": 4, "output_length": 2, "hash_ids": []},
            {"timestamp": 1000, "input_length": 8, "output_length": 3}]
    path = write(tmp_path, "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert load(path, "mooncake")["arrival_s"].tolist() == [2.0, 0.0]  # rebased to the earliest
