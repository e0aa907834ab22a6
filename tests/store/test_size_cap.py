"""Which partitions the size cap drops: the oldest first, across tables, down to 90 % of the limit,
never a table's newest partition nor the exactly-once ledger."""

from __future__ import annotations

from ferry.store.size_cap import Partition, to_drop

MB = 10**6


def _p(table: str, start: str, mb: int) -> Partition:
    return Partition(table, start, start, rows=mb * 1000, bytes=mb * MB)


def test_under_the_limit_nothing_goes() -> None:
    parts = [_p("otel_logs", "2026-11-29 10:00:00", 3), _p("otel_logs", "2026-11-29 11:00:00", 3)]
    assert to_drop(parts, 6 * MB) == []


def test_oldest_go_first_across_tables_down_to_ninety_percent() -> None:
    parts = sorted([
        _p("otel_metrics_sum", "2026-11-28", 4),
        _p("otel_logs", "2026-11-28 23:00:00", 3),
        _p("otel_logs", "2026-11-29 00:00:00", 3),
        _p("otel_metrics_sum", "2026-11-29", 2),
        _p("otel_logs", "2026-11-29 01:00:00", 3),
    ], key=lambda p: (p.start, p.table))
    # 15 MB held, limit 10: drop until at most 9 MB, oldest first.
    assert [(p.table, p.start) for p in to_drop(parts, 10 * MB)] == [
        ("otel_metrics_sum", "2026-11-28"),
        ("otel_logs", "2026-11-28 23:00:00"),
    ]


def test_a_tables_newest_partition_and_the_ledger_stay_even_over_the_limit() -> None:
    parts = [
        _p("ferry_batches", "2026-11-27", 50),
        _p("otel_logs", "2026-11-29 00:00:00", 5),
        _p("otel_traces", "2026-11-29 00:00:00", 5),
        _p("otel_logs", "2026-11-29 01:00:00", 5),
    ]
    assert [(p.table, p.start) for p in to_drop(parts, 1 * MB)] == [("otel_logs", "2026-11-29 00:00:00")]
