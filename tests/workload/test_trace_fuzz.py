"""Fuzzing the trace loaders (issue 16): each format's sample file, mutated as a careless tool or an
adversary would (rows cut short, fields dropped or doubled, NaN / inf / -1 / 2^63 / thousand-digit
numbers, unicode, a byte-order mark, CRLF line ends, binary junk, a header of thousands of columns,
JSON nested 100,000 deep, a file cut anywhere), loads as a valid job table or fails with one
CapsimError: never another exception, never a hang.

CI runs EXAMPLES cases per format (strict and lenient mode drawn at random); a longer hunt on demand:

    CAPSIM_FUZZ_EXAMPLES=5000 python -m pytest tests/workload/test_trace_fuzz.py

The crashes the adversarial review found are kept below as explicit regression tests.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from simulator.errors import CapsimError
from simulator.workload.schema import validate_jobs
from simulator.workload.traces import load_trace

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "traces" / "samples"
EXAMPLES = int(os.environ.get("CAPSIM_FUZZ_EXAMPLES", "120"))
CASE_SECONDS = 10  # every case, however hostile, is answered within this (the real ones in milliseconds)
MAX_MESSAGE = 600  # characters: an error names the file, the line and what was expected, and quotes little

# Delimited formats: (sample file, separator, format).
DELIMITED = {
    "csv": ("jobs.csv", ","),
    "helios": ("helios_cluster_log.csv", ","),
    "acme": ("acme_trace.csv", ","),
    "alibaba2023": ("alibaba2023_pod_list.csv", ","),
    "pai": ("pai_job_table.csv", ","),
    "pai_tasks": ("pai_task_table.csv", ","),  # the task table mutated, the job table intact
    "sacct": ("slurm_sacct.txt", "|"),
    "swf": ("sample.swf", " "),
}
NASTY = [
    "", " ", "NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0", "0", "0.5", "1.5", "1e308", "1e309", "-1e309",
    str(2 ** 63 - 1), str(2 ** 63), str(2 ** 64), str(-(2 ** 63) - 1), "9" * 5000, "9" * 400 + ":00:00",
    "0x1f", "1_000", "١٢", "None", "null", "Unknown", '"', '""', "'", ",", "|", ";", "\t", "é", "日本",
    "\U0001F600", "\u2028", "\ud800", "\x00", "2020-13-45 25:61:61", "9999-12-31 23:59:59",
    "0001-01-01 00:00:00", "1-00:00:00", "gres/gpu=" + str(2 ** 63), "cpu=1e999,gres/gpu=1", "gres/gpu=-2",
    "mem=1e400G", "UNLIMITED",
]
JSON_NASTY = [None, True, 0, -1, 1.5, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 400, float("nan"), float("inf"),
              "", "x", "2017-13-45 00:00:00", "9999-12-31 23:59:59", "\ud800", "9" * 5000, [], {}, [[]], {"a": 1},
              ["gpu0"] * 1000, "@@DEEP@@"]


class CaseTimeout(BaseException):
    """Not an Exception (nor an OSError, as TimeoutError is): no loader's except clause can swallow it."""


@contextmanager
def time_bound(seconds: int):
    """Fail a case that runs past `seconds` (where SIGALRM exists: a hang in Python code is interrupted)."""
    def expire(signum, frame):
        raise CaseTimeout(f"a load ran past {seconds} s")

    if not hasattr(signal, "SIGALRM"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_load(path: Path, fmt: str, *, strict: bool, **options) -> None:
    """A valid job table or one short CapsimError; nothing else, and in bounded time."""
    started = time.perf_counter()
    with time_bound(3 * CASE_SECONDS):
        try:
            load = load_trace(path, fmt, strict=strict, **options)
        except CapsimError as exc:
            assert len(str(exc)) <= MAX_MESSAGE + len(str(path)), str(exc)[:2000]
            load = None
    assert time.perf_counter() - started < CASE_SECONDS
    if currently_in_test_context():  # the shares of each outcome: --hypothesis-show-statistics
        mode = "strict" if strict else "lenient"
        event(f"{mode}: a job table" if load is not None else f"{mode}: a CapsimError")
    if load is not None:
        check_table(load, fmt, strict=strict)


def check_table(load, fmt: str, *, strict: bool) -> None:
    jobs = load.jobs
    validate_jobs(jobs, "fuzz")  # the project's own schema check must pass as it stands
    assert jobs["gpus"].dtype == np.int64 and (jobs["gpus"] >= 1).all()
    for column in ("submit_time", "duration"):
        assert np.isfinite(jobs[column].to_numpy(dtype=float)).all(), column
    assert (jobs["duration"] >= 0).all()
    if fmt not in ("csv", "parquet"):  # traces are rebased to their first submission; job lists kept as written
        assert (jobs["submit_time"] >= 0).all()
    for column in jobs.columns:  # optional numbers are finite where present
        if jobs[column].dtype.kind == "f":
            assert not np.isinf(jobs[column].to_numpy()).any(), column
    if strict:
        assert load.skipped == 0
    # Every record is accounted for: kept, dropped (not a GPU job) or skipped (malformed).
    skipped = sum(n for reason, n in load.skipped_reasons.items() if not reason.startswith("pai_task_table"))
    assert load.rows == skipped + sum(load.dropped.values()) + len(jobs)


# ---------------------------------------------------------------- mutations of text files

def _position(draw, n: int) -> int:
    """0 to n with equal chance (st.integers favours 0: the header or the file's start, far too often)."""
    return draw(st.sampled_from(range(n + 1)))


def _index(draw, items) -> int:
    return _position(draw, max(len(items) - 1, 0))


def _line(draw, lines) -> int:
    """A line to damage: the first (a header, in most formats) one time in five, else any other."""
    if len(lines) == 1 or draw(st.sampled_from([True, False, False, False, False])):
        return 0
    return 1 + _index(draw, lines[1:])


def _nasty(draw) -> str:
    return draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=12)))


def _fields(draw, lines: list[str], sep: str) -> tuple[int, list[str], str]:
    i = _line(draw, lines)
    line = lines[i]
    end = line[len(line.rstrip("\r\n")):]
    return i, line[:len(line) - len(end)].split(sep), end


def cut_line(draw, lines, sep):
    i = _line(draw, lines)
    body = lines[i].rstrip("\n")
    lines[i] = body[:_position(draw, max(len(body) - 1, 0))] + lines[i][len(body):]
    return lines


def drop_field(draw, lines, sep):
    i, fields, end = _fields(draw, lines, sep)
    del fields[_index(draw, fields)]
    lines[i] = sep.join(fields) + end
    return lines


def double_field(draw, lines, sep):
    i, fields, end = _fields(draw, lines, sep)
    j = _index(draw, fields)
    fields.insert(j, fields[j])
    lines[i] = sep.join(fields) + end
    return lines


def set_field(draw, lines, sep):
    i, fields, end = _fields(draw, lines, sep)
    fields[_index(draw, fields)] = _nasty(draw)
    lines[i] = sep.join(fields) + end
    return lines


def widen(draw, lines, sep):
    i = _line(draw, lines)
    extra = draw(st.sampled_from([3, 500, 999, 1001, 5000, 100_000]))
    body = lines[i].rstrip("\n")
    lines[i] = body + "".join(f"{sep}x{k}" for k in range(extra)) + lines[i][len(body):]
    return lines


def drop_line(draw, lines, sep):
    if lines:
        del lines[_index(draw, lines)]
    return lines


def double_line(draw, lines, sep):
    if lines:
        i = _index(draw, lines)
        lines.insert(i, lines[i])
    return lines


def insert_text(draw, lines, sep):
    i = _line(draw, lines)
    k = _position(draw, len(lines[i]))
    lines[i] = lines[i][:k] + _nasty(draw) + lines[i][k:]
    return lines


LINE_MUTATIONS = [cut_line, drop_field, double_field, set_field, set_field, widen, drop_line, double_line,
                  insert_text]


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """Byte-level damage any file can suffer: cut anywhere, junk inserted, BOM, CRLF, no final line end."""
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["cut", "junk", "bom", "crlf", "no_final_newline", "flip"]))
        if kind == "cut":
            data = data[:_position(draw, len(data))]
        elif kind == "junk":
            k = _position(draw, len(data))
            data = data[:k] + draw(st.binary(min_size=1, max_size=64)) + data[k:]
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif kind == "no_final_newline":
            data = data.rstrip(b"\r\n")
        elif kind == "flip" and data:
            k = _position(draw, len(data) - 1)
            data = data[:k] + bytes([data[k] ^ draw(st.integers(1, 255))]) + data[k + 1:]
    return data


@st.composite
def mutated_text(draw, text: str, sep: str) -> bytes:
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        lines = draw(st.sampled_from(LINE_MUTATIONS))(draw, lines, sep) or [""]
    return draw(mutated_bytes("".join(lines).encode("utf-8", "surrogatepass")))


# ---------------------------------------------------------------- mutations of Philly JSON and Parquet

@st.composite
def mutated_philly(draw) -> bytes:
    jobs = json.loads((SAMPLES / "philly_cluster_job_log.json").read_text())
    for _ in range(draw(st.integers(0, 3))):
        job = jobs[_index(draw, jobs)] if jobs else {}
        job = job if isinstance(job, dict) else {}
        attempt = job["attempts"][0] if isinstance(job.get("attempts"), list) and job["attempts"] \
            and isinstance(job["attempts"][0], dict) else {}
        target = draw(st.sampled_from([job, attempt, jobs]))
        kind = draw(st.sampled_from(["set", "set", "drop", "double"]))
        if isinstance(target, list):
            if kind == "double" and target:
                target.append(json.loads(json.dumps(target[0])))
            elif kind == "set":
                target.append(draw(st.sampled_from(JSON_NASTY)))
        elif target:
            key = draw(st.sampled_from(sorted(target)))
            if kind == "drop":
                del target[key]
            else:
                target[key] = draw(st.sampled_from(JSON_NASTY))
    text = json.dumps(jobs, indent=draw(st.sampled_from([None, 2])))
    depth = draw(st.sampled_from([10, 900, 5000, 100_000]))
    text = text.replace('"@@DEEP@@"', "[" * depth + "]" * depth)
    return draw(mutated_bytes(text.encode("utf-8", "surrogatepass")))


@st.composite
def mutated_parquet(draw) -> bytes:
    frame = pd.read_parquet(SAMPLES / "jobs.parquet")
    columns = {name: frame[name].tolist() for name in frame.columns}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(columns)))
        kind = draw(st.sampled_from(["set", "set", "drop", "double", "text", "wide"]))
        if kind == "set":
            values = list(columns[name])
            values[_index(draw, values)] = draw(st.sampled_from(
                [None, -1, 0, 1.5, 1e308, float("nan"), float("inf"), -float("inf"), 2 ** 63 - 1, "x", "9" * 5000]))
            columns[name] = values
        elif kind == "drop" and len(columns) > 1:
            del columns[name]
        elif kind == "text":
            columns[name] = [None if v is None else str(v) for v in columns[name]]
        elif kind == "wide":
            n = len(next(iter(columns.values())))
            columns |= {f"x{k}": [k] * n for k in range(draw(st.sampled_from([10, 1001])))}
    arrays, names = [], []
    for name, values in columns.items():
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowException, OverflowError):  # mixed types: store as text
            arrays.append(pa.array([None if v is None else str(v) for v in values]))
        names.append(name)
    if draw(st.integers(0, 3)) == 0 and names:  # a duplicated column name, which pandas cannot write
        arrays.append(arrays[0])
        names.append(names[_index(draw, names)])
    if draw(st.integers(0, 3)) == 0:  # 2^63 needs an unsigned column
        arrays.append(pa.array([2 ** 63] * len(arrays[0]), type=pa.uint64()))
        names.append("gpus" if "gpus" not in names else "max_gpus")
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buffer)
    return draw(mutated_bytes(buffer.getvalue()))


FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=CASE_SECONDS), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", sorted(DELIMITED))
def test_fuzz_delimited_formats(name, tmp_path):
    sample, sep = DELIMITED[name]
    fmt = "pai" if name.startswith("pai") else name

    @FUZZ
    @given(data=mutated_text((SAMPLES / sample).read_text(), sep), strict=st.booleans())
    def run(data, strict):
        path = tmp_path / sample
        path.write_bytes(data)
        options = {}
        if fmt == "pai":
            jobs = tmp_path / "pai_job_table.csv"
            if name == "pai_tasks":
                jobs.write_bytes((SAMPLES / "pai_job_table.csv").read_bytes())
            else:
                (tmp_path / "pai_task_table.csv").write_bytes((SAMPLES / "pai_task_table.csv").read_bytes())
            path, options = jobs, {"task_table": tmp_path / "pai_task_table.csv"}
        check_load(path, fmt, strict=strict, **options)

    run()


@FUZZ
@given(data=mutated_philly(), strict=st.booleans())
def test_fuzz_philly(data, strict, tmp_path):
    path = tmp_path / "cluster_job_log"
    path.write_bytes(data)
    check_load(path, "philly", strict=strict)


@FUZZ
@given(data=mutated_parquet(), strict=st.booleans())
def test_fuzz_parquet(data, strict, tmp_path):
    path = tmp_path / "jobs.parquet"
    path.write_bytes(data)
    check_load(path, "parquet", strict=strict)


# ---------------------------------------------------------------- the crashes found by review, kept

TEXT_FORMATS = {  # format: (sample, separator, line of a GPU job with its GPU count field, that field's index)
    "csv": ("jobs.csv", ",", 3, 2),
    "helios": ("helios_cluster_log.csv", ",", 2, 3),
    "acme": ("acme_trace.csv", ",", 2, 3),
    "alibaba2023": ("alibaba2023_pod_list.csv", ",", 2, 3),
    "pai": ("pai_job_table.csv", ",", 2, None),
    "sacct": ("slurm_sacct.txt", "|", 2, None),
    "swf": ("sample.swf", " ", 5, 4),
}


def write_sample(folder: Path, fmt: str, data: bytes | str) -> Path:
    """Write `data` as the format's file; pai gets its intact task table beside it."""
    folder.mkdir(exist_ok=True)
    sample = TEXT_FORMATS[fmt][0] if fmt in TEXT_FORMATS else "philly_cluster_job_log.json"
    path = folder / sample
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if fmt == "pai":
        (folder / "pai_task_table.csv").write_bytes((SAMPLES / "pai_task_table.csv").read_bytes())
    return path


def sample_lines(fmt: str) -> list[str]:
    return (SAMPLES / TEXT_FORMATS[fmt][0]).read_text().splitlines(keepends=True)


def load_error(path: Path, fmt: str, **options) -> CapsimError:
    with pytest.raises(CapsimError) as err:
        load_trace(path, fmt, **options)
    assert len(str(err.value)) <= MAX_MESSAGE + len(str(path))
    return err.value


@pytest.mark.parametrize("fmt", ["csv", "helios", "acme", "alibaba2023", "pai", "sacct", "swf"])
def test_a_row_cut_short_is_reported_by_line(tmp_path, fmt):
    sep, number = TEXT_FORMATS[fmt][1], TEXT_FORMATS[fmt][2]
    lines = sample_lines(fmt)
    lines[number - 1] = lines[number - 1].rstrip("\n").rsplit(sep, 1)[0] + "\n"  # its last field gone
    path = write_sample(tmp_path, fmt, "".join(lines))
    err = load_error(path, fmt)
    assert err.where == f"line {number}" and "fields" in err.detail
    lenient = load_trace(path, fmt, strict=False)
    assert lenient.skipped == 1 and sum(lenient.skipped_reasons.values()) == 1


@pytest.mark.parametrize("fmt", ["csv", "helios", "acme", "alibaba2023", "pai", "sacct", "swf"])
def test_a_last_line_cut_short_is_reported(tmp_path, fmt):
    """`j2,30,1,90` cut to `j2,30,1,9` looks whole: only the missing line end shows the file was cut."""
    lines = sample_lines(fmt)
    lines[-1] = lines[-1].rstrip("\n")
    lines[-1] = lines[-1][:-1] if lines[-1][-1].isdigit() else lines[-1] + "9"  # a last number cut or grown
    path = write_sample(tmp_path, fmt, "".join(lines))
    err = load_error(path, fmt)
    assert err.where == f"line {len(lines)}" and "cut short" in err.detail
    complete = load_trace(write_sample(tmp_path / "whole", fmt, "".join(sample_lines(fmt))), fmt)
    lenient = load_trace(path, fmt, strict=False)
    assert lenient.skipped == 1 and lenient.rows == complete.rows


@pytest.mark.parametrize("fmt", ["csv", "helios", "acme", "alibaba2023", "swf"])
@pytest.mark.parametrize("count", [2 ** 63, 2 ** 64, 10 ** 30])
def test_gpu_counts_beyond_int64_are_refused_not_wrapped(tmp_path, fmt, count):
    sep, number, field = TEXT_FORMATS[fmt][1:]
    lines = sample_lines(fmt)
    fields = lines[number - 1].rstrip("\n").split(sep)
    fields[field] = str(count)
    lines[number - 1] = sep.join(fields) + "\n"
    path = write_sample(tmp_path, fmt, "".join(lines))
    assert load_error(path, fmt).where == f"line {number}"
    lenient = load_trace(path, fmt, strict=False)
    assert lenient.skipped == 1 and (lenient.jobs["gpus"] > 0).all()


def test_sacct_gpu_counts_beyond_int64_and_bad_rows_name_the_line(tmp_path):
    """sacct named a job ("job '2002' (row 2)") and stopped in lenient mode too; now: the line, and skip."""
    text = (SAMPLES / "slurm_sacct.txt").read_text()
    for bad in (text.replace("gres/gpu=16", f"gres/gpu={2 ** 63}"), text.replace("00:10:00", "9" * 400 + ":00:00"),
                text.replace("gres/gpu=16", "gres/gpu=-16"), text.replace("mem=1T", "mem=1e400T")):
        path = write_sample(tmp_path, "sacct", bad)
        assert load_error(path, "sacct").where == "line 4"  # job 2002's line
        lenient = load_trace(path, "sacct", strict=False)
        assert lenient.skipped == 1 and "2002" not in set(lenient.jobs["job_id"])


def test_sacct_duplicated_header_column(tmp_path):
    text = (SAMPLES / "slurm_sacct.txt").read_text()
    for header in (text.replace("Account", "JobID", 1), text.replace("|User|", "|User|User|", 1)):
        path = write_sample(tmp_path, "sacct", header)
        err = load_error(path, "sacct")
        assert err.where == "line 1" and "twice" in err.detail


def test_csv_duplicated_header_column(tmp_path):
    path = write_sample(tmp_path, "csv", "job_id,submit_time,gpus,gpus,duration\nj1,0,1,2,5\n")
    assert "twice" in load_error(path, "csv").detail


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_philly_json_nested_deeply(tmp_path, depth):
    job = '{"jobid": "a", "status": "Pass", "submitted_time": "2017-10-03 02:26:11", "attempts": %s}'
    for text in ("[" * depth + "]" * depth, "[" + job % ("[" * depth + "]" * depth) + "]"):
        path = write_sample(tmp_path, "philly", text)
        check_load(path, "philly", strict=True)
        with pytest.raises(CapsimError):
            load_trace(path, "philly")


@pytest.mark.parametrize("fmt", [*TEXT_FORMATS, "philly"])
def test_a_utf8_byte_order_mark_is_accepted(tmp_path, fmt):
    sample = TEXT_FORMATS[fmt][0] if fmt in TEXT_FORMATS else "philly_cluster_job_log.json"
    plain = load_trace(write_sample(tmp_path, fmt, (SAMPLES / sample).read_bytes()), fmt)
    with_bom = load_trace(write_sample(tmp_path, fmt, b"\xef\xbb\xbf" + (SAMPLES / sample).read_bytes()), fmt)
    pd.testing.assert_frame_equal(plain.jobs, with_bom.jobs)


@pytest.mark.parametrize("fmt", ["csv", "helios", "acme", "alibaba2023", "sacct"])
def test_a_million_column_header_is_refused_at_once(tmp_path, fmt):
    sep = TEXT_FORMATS[fmt][1]
    header = sep.join(f"c{i}" for i in range(10 ** 6))
    path = write_sample(tmp_path, fmt, header + "\n" + "".join(sample_lines(fmt)[1:]))
    started = time.perf_counter()
    err = load_error(path, fmt)
    assert time.perf_counter() - started < 5
    assert err.where == "line 1" and "1,000,000" in err.detail and "c999999" not in str(err)


NOT_A_TRACE = [
    b"", b"\n", b"\xef\xbb\xbf", "job_id\n".encode("utf-16"), b"\x80\x81\xfe\xff" * 50, bytes(range(256)) * 8,
    b"PAR1" + b"\x00" * 64, "é,ü\n\xe9\n".encode("latin-1"), b"\x1f\x8b\x08\x00" + b"junk" * 20,
]


@pytest.mark.parametrize("fmt", [*TEXT_FORMATS, "philly", "parquet"])
@pytest.mark.parametrize("content", NOT_A_TRACE)
def test_any_bytes_give_a_table_or_a_capsim_error(tmp_path, fmt, content):
    path = tmp_path / ("jobs.parquet" if fmt == "parquet" else "trace")
    path.write_bytes(content)
    if fmt == "pai":
        (tmp_path / "pai_task_table.csv").write_bytes((SAMPLES / "pai_task_table.csv").read_bytes())
        check_load(path, fmt, strict=True, task_table=tmp_path / "pai_task_table.csv")
    else:
        check_load(path, fmt, strict=True)
        check_load(path, fmt, strict=False)


@pytest.mark.parametrize("fmt", ["csv", "helios", "acme", "alibaba2023", "sacct"])
def test_a_header_alone_is_an_empty_trace(tmp_path, fmt):
    path = write_sample(tmp_path, fmt, sample_lines(fmt)[0])
    assert len(load_trace(path, fmt).jobs) == 0


def test_errors_quote_a_snippet_not_the_file(tmp_path):
    junk = "x" * 1_000_000
    path = write_sample(tmp_path, "csv", f"job_id,submit_time,gpus,duration\nj1,0,{junk},5\n")
    assert len(str(load_error(path, "csv"))) < 300
    path = write_sample(tmp_path, "csv", f"{junk}\nj1,0,1,5\n")
    assert len(str(load_error(path, "csv"))) < 300


def test_a_spreadsheet_header_with_empty_trailing_columns_loads(tmp_path):
    path = write_sample(tmp_path, "csv", "job_id,submit_time,gpus,duration,,\nj1,0,1,5,,\n")
    assert list(load_trace(path, "csv").jobs["job_id"]) == ["j1"]


@pytest.mark.parametrize("suffix,opener", [(".gz", "gzip"), (".bz2", "bz2"), (".xz", "lzma")])
@pytest.mark.parametrize("fmt", ["helios", "sacct", "swf", "philly"])
def test_compressed_traces_load_as_the_plain_ones(tmp_path, fmt, suffix, opener):
    import importlib

    sample = TEXT_FORMATS[fmt][0] if fmt in TEXT_FORMATS else "philly_cluster_job_log.json"
    path = tmp_path / (sample + suffix)
    path.write_bytes(importlib.import_module(opener).compress((SAMPLES / sample).read_bytes()))
    pd.testing.assert_frame_equal(load_trace(path, fmt).jobs, load_trace(SAMPLES / sample, fmt).jobs)
    path.write_bytes(path.read_bytes()[:40])  # cut short: a CapsimError, not an EOFError
    check_load(path, fmt, strict=True)
    with pytest.raises(CapsimError):
        load_trace(path, fmt)


def test_a_parquet_file_with_corrupt_text_is_a_capsim_error(tmp_path):
    """Arrow decodes strings lazily: a byte flipped inside one surfaced as an ArrowException later on."""
    frame = pd.DataFrame({"job_id": ["jobXYZ"], "submit_time": [0.0], "gpus": [1], "duration": [5.0]})
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame), buffer, compression="none")
    path = tmp_path / "jobs.parquet"
    path.write_bytes(buffer.getvalue().replace(b"jobXYZ", b"job\xffYZ"))
    for strict in (True, False):
        check_load(path, "parquet", strict=strict)
