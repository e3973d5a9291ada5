"""The load test (bench/load.py) with small numbers: searches through the real server (`facetrail serve`) stay
correct while a command-line ingestion and an erasure through the portal and the DPO's API run. Latencies are
not asserted here: the machine is shared, and `make bench-load` reports them in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.load import END, START, Config, run, write_section


@pytest.mark.slow
def test_searches_stay_correct_while_an_ingestion_and_an_erasure_run(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\nother sections\n")
    result = run(Config(searchers=3, seconds=10, lfw_images=40, output=output))

    problems = [f"{s.phase} {s.kind}: {s.problem}" for s in result.search_errors[:10]] + result.other_errors
    errors = result.errors
    assert errors == 0, problems
    assert result.of_phase("baseline") and result.of_phase("load"), "both phases made requests"
    assert result.erasure.completed, result.erasure
    assert set(result.erasure.receipt["face_ids"]) == result.truth.bush_faces != frozenset()
    assert result.ingestion.report["images_added"] == 40
    # Every kind of check ran: Obama queries, Bush queries before the erasure and after it completed.
    assert result.count("obama") > 0 and result.count("bush", "before") > 0
    assert result.count("bush", "after") > 0, "no Bush query started after the erasure completed"

    text = output.read_text()
    assert text.startswith("# Benchmarks\n\nother sections\n\n") and text.count(START) == text.count(END) == 1
    assert "**Errors: 0**" in text


def test_the_load_section_replaces_only_itself(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text(f"# Benchmarks\n\nbefore\n\n{START}\nold\n{END}\n\nafter\n")
    write_section(output, "new\n")
    assert output.read_text() == f"# Benchmarks\n\nbefore\n\n{START}\nnew\n{END}\n\nafter\n"
    appended = tmp_path / "other.md"
    appended.write_text("# Benchmarks\n\nonly this\n")
    write_section(appended, "new\n")
    assert appended.read_text() == f"# Benchmarks\n\nonly this\n\n{START}\nnew\n{END}\n"
