"""benchmarks/dbt_nodes.py: a command's seconds per dbt node, read from dbt's rotating log."""

from __future__ import annotations

import os

from benchmarks.dbt_nodes import LogMark, node_seconds, summary

ESC = "\x1b[0m"


def _line(t: str, what: str, node: str) -> str:
    return f"{ESC}{t} [debug] [Thread-1 (]: {what} running node {node}\n"


def test_nodes_are_timed_from_the_mark_across_a_rotation_and_midnight(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    current = logs / "dbt.log"
    # an earlier command's node, before the mark: not counted
    current.write_text(_line("22:00:00.000000", "Began", "model.p.old")
                       + _line("22:00:50.000000", "Finished", "model.p.old"))
    mark = LogMark.of(logs)
    with open(current, "a") as f:
        f.write(_line("23:59:50.000000", "Began", "model.p.big")
                + "[0m23:59:51.000000 [info ] [MainThread]: something else\n")
    # dbt rotates: the file moves to dbt.log.1 and a new dbt.log starts
    os.rename(current, logs / "dbt.log.1")
    os.utime(logs / "dbt.log.1", (1_000_000, 1_000_000))
    current.write_text(_line("00:00:10.500000", "Finished", "model.p.big")
                       + _line("00:00:11.000000", "Began", "test.p.unique_big_id.abc123")
                       + _line("00:00:12.000000", "Finished", "test.p.unique_big_id.abc123")
                       + _line("00:00:12.000000", "Began", "model.p.big")
                       + _line("00:00:18.000000", "Finished", "model.p.big"))
    seconds = node_seconds(logs, mark)
    assert seconds == {"model.p.big": 26.5, "test.p.unique_big_id.abc123": 1.0}
    assert summary(seconds) == {"node_seconds": 27.5, "models_over_5s": {"big": 26.5},
                                "tests_over_5s": {}}


def test_a_command_that_started_without_a_log_reads_all_of_it(tmp_path):
    mark = LogMark.of(tmp_path)
    (tmp_path / "dbt.log").write_text(_line("10:00:00.000000", "Began", "model.p.m")
                                      + _line("10:00:07.250000", "Finished", "model.p.m"))
    assert node_seconds(tmp_path, mark) == {"model.p.m": 7.25}
