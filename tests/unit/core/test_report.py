"""Run reports: sections accumulate in the run's report and its copy under logs/; the summary names what failed."""

from chicago_taxi.core.report import RunReport, summarize


def test_report_sections_accumulate_and_mirror_to_logs(tmp_path):
    report = RunReport(tmp_path / "run" / "report.json", tmp_path / "logs" / "run.json")
    report.update("extract", {"rows": 3})
    report.update("train", {"epochs_run": 1})
    assert report.read()["extract"] == {"rows": 3}
    assert (tmp_path / "logs" / "run.json").read_text() == (tmp_path / "run" / "report.json").read_text()


def test_summary_names_failed_expectations_and_the_stop_reason():
    text = summarize(
        {
            "validate_raw": {
                "success": False,
                "rows": 10,
                "quarantined_rows": 2,
                "bad_row_share": 0.2,
                "failed_expectations": {"expect_column_to_exist(fare)": 0},
                "blocking_failures": ["bad-row share 20.00% exceeds 5.00%"],
                "quarantine": "/q.parquet",
            },
        }
    )
    assert "FAILED" in text and "expect_column_to_exist(fare)" in text and "STOPPED: bad-row share" in text and "/q.parquet" in text
