"""docs/results.md is generated from benchmarks/results/ by benchmarks/results_doc.py: it must be
what the script writes from the committed result files (``--check``), so the page cannot drift."""

from __future__ import annotations

from benchmarks import results_doc


def test_results_page_is_up_to_date(capsys):
    assert results_doc.main(["--check"]) == 0, capsys.readouterr().err


def test_check_reports_a_stale_page_and_writes_nothing(tmp_path, capsys):
    page = tmp_path / "results.md"
    page.write_text("# stale\n")
    assert results_doc.main(["--check", "--out", str(page)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert page.read_text() == "# stale\n"
