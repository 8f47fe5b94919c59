"""Fast checks of the benchmark harness: tool-output parsers, sampler, load driver, verdicts.

No PostgreSQL, wrk or matplotlib needed: the tool outputs below were captured from
pgbench 15.20 and wrk 4.1.0 on the benchmark machine. Run with
``PYTHONPATH=src pytest -q benchmarks/test_parsers.py``.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from suite.core import (
    AuditHook,
    BenchmarkError,
    PgTarget,
    RowFunc,
    RowResult,
    RowSpec,
    RunContext,
    select_rows,
)
from suite.load import Zipf, percentile, run_workers
from suite.machine import fsync_latency_us, python_speed_us
from suite.parsers import parse_pgbench_log, parse_pgbench_summary, parse_wrk, wrk_time_to_ms
from suite.report import RowOutcome, evaluate_limits, evaluate_ratios, markdown_report
from suite.runner import machine_line, plot_title, run_row, run_rows
from suite.targets import Limit, Ratio
from suite.wrk import lua_string, run_wrk, wrk_post_script

WRK_OK = """\
Running 3s test @ http://127.0.0.1:18765/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    47.55ms   27.50ms 416.20ms   95.71%
    Req/Sec   251.60    143.99   390.00     66.67%
  Latency Distribution
     50%   43.98ms
     75%   44.01ms
     90%   44.08ms
     99%  208.96ms
  1505 requests in 3.00s, 169.44KB read
Requests/sec:    500.97
Transfer/sec:     56.40KB
"""

WRK_NON_2XX = """\
Running 2s test @ http://127.0.0.1:18765/err
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    42.95ms    6.72ms  48.03ms   97.32%
    Req/Sec    74.75     32.84   121.00     52.50%
  Latency Distribution
     50%   43.98ms
     75%   44.01ms
     90%   44.03ms
     99%   48.01ms
  299 requests in 2.01s, 39.56KB read
  Non-2xx or 3xx responses: 299
Requests/sec:    148.90
Transfer/sec:     19.70KB
"""

WRK_SOCKET_ERRORS = """\
Running 3s test @ http://127.0.0.1:18765/
  2 threads and 400 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    48.01ms   51.62ms 864.34ms   99.05%
    Req/Sec   319.73    183.58   720.00     65.00%
  Latency Distribution
     50%   43.98ms
     75%   44.02ms
     90%   44.10ms
     99%   49.24ms
  1911 requests in 3.01s, 216.63KB read
  Socket errors: connect 0, read 0, write 0, timeout 15
Requests/sec:    634.05
Transfer/sec:     71.87KB
"""

# A fast server: microsecond medians, a one-second tail, megabytes read, k-suffixed Req/Sec.
WRK_MIXED_UNITS = """\
Running 10s test @ http://127.0.0.1:8000/noop
  2 threads and 128 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   912.31us    2.10ms    1.02s    98.50%
    Req/Sec    21.35k     1.20k   24.01k    71.00%
  Latency Distribution
     50%  640.00us
     75%  810.00us
     90%    1.10ms
     99%    1.20s
  425001 requests in 10.00s, 61.21MB read
Requests/sec:  42496.12
Transfer/sec:      6.12MB
"""

WRK_WITHOUT_LATENCY = """\
Running 1s test @ http://127.0.0.1:8000/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.00ms    0.50ms   3.00ms   90.00%
    Req/Sec     4.00k     0.10k    4.20k    70.00%
  8000 requests in 1.00s, 1.00MB read
Requests/sec:   8000.00
Transfer/sec:      1.00MB
"""

PGBENCH_OUT = """\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 6568
number of failed transactions: 0 (0.000%)
latency average = 1.217 ms
initial connection time = 4.669 ms
tps = 3285.555711 (without initial connection time)
"""

PGBENCH_LOG = """\
0 1 2911 0 1795560232 62499
0 2 1401 0 1795560232 63909
1 1 4992 0 1795560232 64649
2 1 3975 0 1795560232 63520
3 1 failed 0 1795560232 65140
3 2 skipped 0 1795560232 65950
"""


def test_wrk_report_gives_requests_per_second_and_latency_percentiles_in_ms() -> None:
    report = parse_wrk(WRK_OK)
    assert report.requests_per_s == pytest.approx(500.97)
    assert report.requests == 1505
    assert report.duration_s == pytest.approx(3.0)
    assert report.p50_ms == pytest.approx(43.98)
    assert report.p90_ms == pytest.approx(44.08)
    assert report.p99_ms == pytest.approx(208.96)
    assert report.latency_max_ms == pytest.approx(416.20)
    assert (report.threads, report.connections) == (2, 32)
    assert report.read_bytes == pytest.approx(169.44 * 1024)
    assert report.errors == 0


def test_wrk_report_converts_microseconds_and_seconds() -> None:
    report = parse_wrk(WRK_MIXED_UNITS)
    assert report.p50_ms == pytest.approx(0.64)
    assert report.p99_ms == pytest.approx(1200.0)
    assert report.latency_avg_ms == pytest.approx(0.91231)
    assert report.requests_per_s == pytest.approx(42496.12)
    assert report.read_bytes == pytest.approx(61.21 * 1024**2)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("456.00us", 0.456), ("1.23ms", 1.23), ("2.00s", 2000.0), ("1.50m", 90_000.0), ("1h", 3.6e6)],
)
def test_wrk_durations_in_every_unit_become_milliseconds(text: str, ms: float) -> None:
    assert wrk_time_to_ms(text) == pytest.approx(ms)


def test_an_unknown_wrk_duration_unit_is_rejected() -> None:
    with pytest.raises(BenchmarkError, match="us\\|ms\\|s"):
        wrk_time_to_ms("3.0ns")


def test_wrk_non_2xx_responses_and_socket_errors_are_counted_as_errors() -> None:
    assert parse_wrk(WRK_NON_2XX).non_2xx_3xx == 299
    assert parse_wrk(WRK_NON_2XX).errors == 299
    sock = parse_wrk(WRK_SOCKET_ERRORS)
    assert sock.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 15}
    assert sock.errors == 15


def test_wrk_output_without_latency_distribution_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="--latency"):
        parse_wrk(WRK_WITHOUT_LATENCY)


def test_wrk_output_of_a_failed_run_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_run_wrk_refuses_anything_but_loopback() -> None:
    with pytest.raises(BenchmarkError, match="loopback"):
        run_wrk("http://10.1.2.3:8000/", connections=8, seconds=1)
    with pytest.raises(BenchmarkError, match="loopback"):
        run_wrk("http://example.com/", connections=8, seconds=1)


def test_pgbench_summary_gives_tps_processed_and_average_latency() -> None:
    s = parse_pgbench_summary(PGBENCH_OUT)
    assert s.tps == pytest.approx(3285.555711)
    assert s.processed == 6568
    assert s.failed == 0
    assert s.latency_avg_ms == pytest.approx(1.217)
    assert (s.clients, s.threads) == (4, 2)
    assert s.transaction_type == "<builtin: TPC-B (sort of)>"


def test_pgbench_summary_without_tps_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="tps"):
        parse_pgbench_summary("pgbench: error: connection to server failed\n")


def test_pgbench_log_latencies_are_microseconds_turned_into_ms() -> None:
    log = parse_pgbench_log(PGBENCH_LOG.splitlines())
    assert log.latencies_ms == pytest.approx([2.911, 1.401, 4.992, 3.975])
    assert (log.failed, log.skipped) == (1, 1)


def test_a_truncated_pgbench_log_line_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="line 2"):
        parse_pgbench_log(["0 1 2911 0 1795560232 62499", "0 2 14"])


def test_percentile_uses_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_zipf_probabilities_follow_one_over_rank_and_sum_to_one() -> None:
    z = Zipf(10_000, s=1.0, seed=3)
    harmonic = sum(1 / k for k in range(1, 10_001))
    assert z.probability(0) == pytest.approx(1 / harmonic)
    assert z.probability(9) == pytest.approx(1 / (10 * harmonic))
    assert math.fsum(z.probability(k) for k in range(10_000)) == pytest.approx(1.0)


def test_zipf_samples_are_reproducible_in_range_and_skewed_to_the_head() -> None:
    draws = Zipf(10_000, seed=42).samples(50_000)
    assert draws == Zipf(10_000, seed=42).samples(50_000)
    assert draws != Zipf(10_000, seed=43).samples(50_000)
    assert min(draws) >= 0
    assert max(draws) < 10_000
    counts = Counter(draws)
    expected_head = 50_000 / sum(1 / k for k in range(1, 10_001))  # about 5,100
    assert abs(counts[0] - expected_head) < 0.1 * expected_head
    assert 1.6 < counts[0] / counts[1] < 2.5  # rank 1 is drawn twice as often as rank 2
    assert counts[0] > counts[1] > counts[9]


def test_run_workers_counts_ops_and_errors_separately_and_stops_at_max_ops() -> None:
    def make_op(index: int) -> Callable[[], None]:
        calls = {"n": 0}

        def op() -> None:
            calls["n"] += 1
            if index == 0 and calls["n"] % 5 == 0:
                raise RuntimeError("every fifth op of worker 0 fails")

        return op

    result = run_workers(make_op, workers=3, seconds=5.0, max_ops_per_worker=50)
    assert result.ops + result.errors == 150
    assert result.errors == 10
    assert len(result.latencies_ms) == result.ops
    assert "every fifth op" in (result.first_error or "")
    row = result.to_row("probe", "ops/s")
    assert row.ops == 140
    assert row.extra["errors"] == 10
    with pytest.raises(BenchmarkError, match="10 of 150"):
        result.raise_on_errors()


def test_run_workers_in_processes_merges_every_workers_tally() -> None:
    result = run_workers(
        lambda index: lambda: None, workers=2, seconds=5.0, mode="process", max_ops_per_worker=30
    )
    assert (result.ops, result.errors) == (60, 0)
    assert len(result.latencies_ms) == 60


def test_a_worker_whose_setup_fails_is_reported_without_hanging() -> None:
    def make_op(index: int) -> Callable[[], None]:
        if index == 1:
            raise ConnectionError("database is down")
        return lambda: None

    result = run_workers(make_op, workers=2, seconds=0.2)
    assert result.errors >= 1
    assert "database is down" in (result.first_error or "")


def test_lua_strings_escape_quotes_backslashes_and_utf8() -> None:
    assert lua_string('a"b\\c') == '"a\\"b\\\\c"'
    assert lua_string("é\n") == '"\\195\\169\\010"'


def test_wrk_post_script_cycles_bodies_and_stamps_a_unique_header() -> None:
    script = wrk_post_script(
        ['{"team": 1}', '{"team": 2}'],
        {"Authorization": "Bearer k"},
        path="/v1/charges",
        unique_header="Idempotency-Key",
        run_id="run7",
    )
    assert 'local path = "/v1/charges"' in script
    assert '"{\\"team\\": 1}",' in script and '"{\\"team\\": 2}",' in script
    assert 'headers["Authorization"] = "Bearer k"' in script
    assert 'headers["Content-Type"] = "application/json"' in script
    assert 'headers["Idempotency-Key"] = "run7" .. "-" .. tostring(tid)' in script
    assert "bodies[((n - 1) % #bodies) + 1]" in script
    with pytest.raises(BenchmarkError, match="at least one body"):
        wrk_post_script([])


def _never_run(ctx: RunContext) -> RowResult:
    raise AssertionError("selection tests do not run rows")


def _spec(
    name: str, group: str, func: RowFunc = _never_run, audit: AuditHook | None = None
) -> RowSpec:
    return RowSpec(name, group, func, "", group == "baseline", audit)


def _result(name: str, throughput: float, p99: float = 1.0) -> RowResult:
    return RowResult(name, "ops/s", int(throughput), 1.0, throughput, 0.5, p99)


def test_row_selection_by_exact_name_glob_and_group_keeps_registry_order() -> None:
    specs = [
        _spec(n, g)
        for n, g in (("pg a", "baseline"), ("lib b", "creditbook"), ("pg c", "baseline"))
    ]
    assert [s.name for s in select_rows(specs)] == ["pg a", "lib b", "pg c"]
    assert [s.name for s in select_rows(specs, globs=["pg*"])] == ["pg a", "pg c"]
    assert [s.name for s in select_rows(specs, names=["pg c", "lib b"])] == ["lib b", "pg c"]
    assert [s.name for s in select_rows(specs, groups=["creditbook"])] == ["lib b"]
    with pytest.raises(BenchmarkError, match="unknown row"):
        select_rows(specs, names=["pg z"])


def test_ratios_report_met_missed_informational_and_missing_rows() -> None:
    outcomes = [
        RowOutcome("lib", "creditbook", False, "", _result("lib", 50_000), audit="clean"),
        RowOutcome("sql", "baseline", True, "", _result("sql", 4_000)),
        RowOutcome("slow", "creditbook", False, "", _result("slow", 100), audit="clean"),
        RowOutcome("broken", "creditbook", False, "", None, error="boom"),
    ]
    verdicts = evaluate_ratios(
        outcomes,
        [
            Ratio("lib", "sql", 10.0),
            Ratio("slow", "sql", 10.0),
            Ratio("sql", "lib"),
            Ratio("broken", "sql", 1.0),
            Ratio("sql", "lib", scale=8),
        ],
    )
    assert [v.status for v in verdicts] == ["met", "missed", "info", "n/a", "info"]
    assert verdicts[0].value == pytest.approx(12.5)
    assert verdicts[4].value == pytest.approx(0.64)
    assert verdicts[4].label == "8 x sql / lib"
    limits = evaluate_limits(
        outcomes,
        [Limit("lib", "throughput", minimum=20_000), Limit("lib", "p99_ms", maximum=0.5)],
    )
    assert [v.status for v in limits] == ["met", "missed"]
    assert "| lib | 50,000 | ops/s |" in markdown_report(outcomes, verdicts, limits)


def _ctx() -> RunContext:
    return RunContext(1.0, PgTarget())


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_a_creditbook_row_without_an_audit_hook_fails() -> None:
    ctx = _ctx()
    try:
        outcome = run_row(_spec("lib", "creditbook", lambda c: _result("x", 10)), ctx, _quiet())
    finally:
        ctx.close()
    assert outcome.audit == "failed"
    assert not outcome.ok
    assert outcome.result is not None and outcome.result.name == "lib"


def test_an_audit_hook_reporting_a_problem_fails_the_row_and_a_clean_one_passes() -> None:
    def dirty_row(c: RunContext) -> RowResult:
        c.add_audit(lambda: ["ledger does not balance: 3 credits missing"])
        return _result("lib", 10)

    ctx = _ctx()
    try:
        dirty = run_row(_spec("lib", "creditbook", dirty_row), ctx, _quiet())
        clean = run_row(
            _spec("lib2", "creditbook", lambda c: _result("lib2", 10), audit=lambda: []),
            ctx,
            _quiet(),
        )
    finally:
        ctx.close()
    assert dirty.audit == "failed"
    assert dirty.audit_problems == ("ledger does not balance: 3 credits missing",)
    assert clean.audit == "clean"
    assert clean.ok


def test_a_row_that_raises_is_recorded_as_an_error_not_a_crash() -> None:
    def broken(c: RunContext) -> RowResult:
        raise BenchmarkError("pgbench exited 1: connection refused")

    ctx = _ctx()
    try:
        outcome = run_row(_spec("pg", "baseline", broken), ctx, _quiet())
    finally:
        ctx.close()
    assert outcome.result is None
    assert "connection refused" in (outcome.error or "")
    assert not outcome.ok


def test_fixtures_are_made_once_per_run_and_torn_down_newest_first() -> None:
    ctx = _ctx()
    events: list[str] = []
    made = [ctx.fixture("db", lambda: "db1", lambda v: events.append(f"drop {v}")) for _ in "ab"]
    ctx.fixture("table", lambda: "t", lambda v: events.append(f"drop {v}"))
    assert made == ["db1", "db1"]
    assert ctx.close() == []
    assert events == ["drop t", "drop db1"]


def test_repeats_report_the_median_throughput_and_keep_every_repetition() -> None:
    figures = iter([300.0, 100.0, 200.0])
    ctx = _ctx()
    try:
        [outcome], _ = run_rows(
            [_spec("pg", "baseline", lambda c: _result("pg", next(figures)))], ctx, _quiet(), 3
        )
    finally:
        ctx.close()
    assert outcome.result is not None
    assert outcome.result.throughput == 200.0
    assert outcome.result.extra["repeats"] == [300.0, 100.0, 200.0]


def test_repeats_run_in_rounds_so_the_rows_of_a_ratio_are_measured_together() -> None:
    calls: list[str] = []
    figures = {"noop": iter([300.0, 100.0, 200.0]), "charges": iter([30.0, 10.0, 20.0])}

    def measured(name: str) -> Callable[[RunContext], RowResult]:
        def run(ctx: RunContext) -> RowResult:
            calls.append(name)
            return _result(name, next(figures[name]))

        return run

    ctx = _ctx()
    try:
        outcomes, interrupted = run_rows(
            [
                _spec("noop", "baseline", measured("noop")),
                _spec("charges", "baseline", measured("charges")),
            ],
            ctx,
            _quiet(),
            3,
        )
    finally:
        ctx.close()
    assert calls == ["noop", "charges"] * 3
    assert not interrupted
    assert [(o.name, o.result.throughput) for o in outcomes if o.result] == [
        ("noop", 200.0),
        ("charges", 20.0),
    ]
    assert outcomes[1].result is not None
    assert outcomes[1].result.extra["repeats"] == [30.0, 10.0, 20.0]


def test_a_row_that_fails_in_a_round_is_reported_failed_and_not_run_again() -> None:
    figures = iter([100.0])
    calls: list[str] = []

    def flaky(ctx: RunContext) -> RowResult:
        calls.append("flaky")
        return _result("flaky", next(figures))  # StopIteration the second time

    ctx = _ctx()
    try:
        outcomes, _ = run_rows([_spec("flaky", "baseline", flaky)], ctx, _quiet(), 3)
    finally:
        ctx.close()
    assert calls == ["flaky", "flaky"]
    assert not outcomes[0].ok and outcomes[0].error


def test_the_calibration_times_a_python_task_and_an_fsync_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    assert 0 < python_speed_us(seconds=0.05) < 10_000_000
    assert 0 < fsync_latency_us(str(tmp_path), count=5) < 10_000_000
    assert list(tmp_path.iterdir()) == []


def test_the_report_names_the_machine_and_its_calibration_when_the_run_has_one() -> None:
    document = {
        "started_at": "2026-11-25T08:00:00+00:00",
        "seconds_per_row": 10,
        "machine": {
            "nproc": 2,
            "cpu_model": "AMD EPYC",
            "postgresql": {"server_version": "15.19", "fsync": "on", "synchronous_commit": "on"},
            "calibration": {"python_task_us": 1234.5, "fsync_4k_us": 250.0},
        },
    }
    title = plot_title(document)
    assert title.endswith("\npython task 1234.5 us, fsync 250 us")
    text = markdown_report([], [], [], machine_line(document))
    assert text.startswith("Machine: 2026-11-25 · 2 cpus (AMD EPYC)")
    document["machine"]["calibration_at_end"] = {"python_task_us": 2000.0, "fsync_4k_us": 300.0}
    assert plot_title(document).endswith("fsync 250 us (at the end: 2000 us, 300 us)")
    del document["machine"]["calibration"]
    assert "python task" not in plot_title(document)
