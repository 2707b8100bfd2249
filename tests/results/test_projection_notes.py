"""What a backtest says of a projected curve's band, in the headline's caveats: the report's and
``summary.txt``'s (model.results.projection_notes). No sampling: a fake fit."""

from __future__ import annotations

import dataclasses

import pytest

from model import cli
from model.results import calibration, projection_notes
from model.results.calibration import find_backtest
from model.results.run_folder import write_run
from tests.report.fakes import fake_result
from tests.results.test_calibration import backtest_beside, with_gate_failures


@pytest.fixture(scope="module")
def projected():
    return fake_result(through="2023-08-31")


@pytest.mark.parametrize(
    ("lower", "upper", "words"),
    [
        (0.69, 0.87, "too narrow"),
        (0.80, 0.96, "consistent with 90%"),
        (0.91, 0.99, "too wide"),
    ],
)
def test_a_bands_backtest_coverage_is_judged_by_its_interval(lower, upper, words):
    assert projection_notes._held(lower, upper, 0.9, 20) == (
        f"{words} at 20 readings" if words.startswith("consistent") else words
    )


def test_the_retry_ladder_reads_the_same_from_json_a_number_or_none():
    """settings.json stores the ladder as a list, a Sampler as a tuple; a backtest from before
    retries existed records none."""
    ladder = calibration.retry_ladder
    assert ladder({"retry_target_accept": [0.99, 0.999]}) == (0.99, 0.999)
    assert ladder({"retry_target_accept": (0.99, 0.999)}) == (0.99, 0.999)
    assert ladder({"retry_target_accept": 0.99}) == (0.99,)
    assert ladder({"retry_target_accept": None}) == ladder({}) == ()


def summary_beside(result, tmp_path, backtest: bool) -> list[str]:
    """``summary.txt`` of a run written under ``runs/``, with (or without) a backtest of the same
    readings and config beside it: the lines of its caveats."""
    runs = tmp_path / "runs"
    runs.mkdir()
    if backtest:
        backtest_beside(result, runs)
    lines = (write_run(result, runs / "20260101T000000Z-fake") / "summary.txt").read_text()
    lines = lines.splitlines()
    start = lines.index("What these numbers are conditional on:")
    caveats = []
    for line in lines[start + 1 :]:
        if not line.startswith("  - "):
            break
        caveats.append(line[4:])
    assert lines[:start] == result.headline_sentences()  # with the gate's warning, if it failed
    return caveats


def test_the_summary_gives_the_headlines_caveats_and_the_backtest_beside_it(projected, tmp_path):
    caveats = summary_beside(projected, tmp_path, backtest=True)
    head = projected.headline()
    assert caveats[: len(head["caveats"])] == head["caveats"]
    months = head["days_past_last_reading"] / 30.44
    (backtest,) = caveats[len(head["caveats"]) :]
    assert backtest.startswith(
        f"The projection runs {months:.1f} months past the last reading. In a backtest of these "
        "readings (run validate-20260102T000000Z), the model's 90% bands for a new reading"
    )
    # The same sentence the report's headline gives.
    found = find_backtest(
        tmp_path / "runs", projected.idata.attrs["data_checksum"], projected.config
    )
    assert [backtest] == projection_notes.projection_calibration(projected, found, short=True)


def test_predictions_by_refits_that_missed_the_gate_are_counted_where_quoted(projected, tmp_path):
    (tmp_path / "runs").mkdir()
    backtest_beside(projected, tmp_path / "runs", targets=with_gate_failures(2))
    found = find_backtest(
        tmp_path / "runs", projected.idata.attrs["data_checksum"], projected.config
    )
    for short in (True, False):
        (text,) = projection_notes.projection_calibration(projected, found, short=short)
        assert (
            " 2 of these 5 predictions came from refits that missed the diagnostics gate, whose "
            "draws do not support them." in text
        )
    backtest_beside(projected, tmp_path / "clean", targets=with_gate_failures(0))
    clean = find_backtest(
        tmp_path / "clean", projected.idata.attrs["data_checksum"], projected.config
    )
    assert "diagnostics gate" not in " ".join(
        projection_notes.projection_calibration(projected, clean, short=False)
    )
    backtest_beside(projected, tmp_path / "unrecorded")  # no gate_passed column
    unrecorded = find_backtest(
        tmp_path / "unrecorded", projected.idata.attrs["data_checksum"], projected.config
    )
    (text,) = projection_notes.projection_calibration(projected, unrecorded, short=True)
    assert " The backtest does not record whether its refits passed the diagnostics gate." in text


def test_drawing_a_run_again_quotes_a_backtest_made_after_it_in_its_summary(projected, tmp_path):
    """``python -m model plots`` writes summary.txt again: a backtest made after the fit is quoted
    there as in the report, and the phases the fit recorded are kept."""
    runs = tmp_path / "runs"
    runs.mkdir()
    folder = write_run(projected, runs / "20260101T000000Z-fake")
    summary = folder / "summary.txt"
    before = summary.read_text()
    phases = before[before.index("\n\nWhere the time went (wall seconds since ") :]
    assert "no backtest of them was found" in before
    backtest_beside(projected, runs)
    argv = ["plots", str(folder), "--questions=none.csv", "--sourced=none.csv"]
    assert cli.main(argv) == 0
    text = summary.read_text()
    found = find_backtest(runs, projected.idata.attrs["data_checksum"], projected.config)
    (quoted,) = projection_notes.projection_calibration(projected, found, short=True)
    assert f"  - {quoted}\n" in text and "no backtest of them was found" not in text
    assert text.endswith(phases) and text.count("Where the time went") == 1


def test_the_summary_says_when_the_band_past_the_data_is_not_measured(projected, tmp_path):
    caveats = summary_beside(projected, tmp_path, backtest=False)
    months = projected.headline()["days_past_last_reading"] / 30.44
    assert caveats[-1] == (
        f"How well a band {months:.1f} months past the last reading holds is not measured for "
        "these readings and this model: no backtest of them was found beside this run (python -m "
        "model validate with this run's table and config measures it; make validate on the "
        "project's own)."
    )
    # A summary asked for without looking for a backtest says nothing of one.
    assert not any("backtest" in line for line in projected.summary_text().splitlines()[:30])


def test_a_curve_with_no_reference_house_is_told_what_a_backtest_needs(tmp_path):
    projected = fake_result(through="2023-08-31")
    zero_sum = dataclasses.replace(
        projected, config=projected.config.replace(house_effects="zero_sum"), _design=None
    )
    assert zero_sum.design.reference_pollster is None
    months = zero_sum.headline()["days_past_last_reading"] / 30.44
    (short,) = projection_notes.projection_calibration(zero_sum, None, short=True)
    assert short == (
        f"How well a band {months:.1f} months past the last reading holds is not measured for "
        "these readings and this model: no backtest of them was found beside this run (a backtest "
        "needs the curve's level fixed by a reference house (config house_effects = "
        "'<pollster>'), whose held-out readings it predicts)."
    )
    (long,) = projection_notes.projection_calibration(zero_sum, None)
    assert "python -m model validate" not in long and "reference house" in long


@pytest.mark.parametrize(
    ("backtest_code", "note"),
    [
        (
            None,
            " The backtest does not record the code it ran on (it may be older than this fit's).",
        ),
        ({"source_sha256": "a" * 64, "git_commit": "c" * 40}, ""),
        (
            {"source_sha256": "b" * 64, "git_commit": "d" * 40},
            f" The backtest ran on other code than this fit (commit {'d' * 40}, against this "
            f"fit's {'c' * 40}).",
        ),
        (
            {"source_sha256": "b" * 64, "git_commit": None},
            " The backtest ran on other code than this fit.",
        ),
    ],
)
def test_a_backtest_on_other_code_than_the_fits_says_so(tmp_path, backtest_code, note):
    fit = fake_result(through="2023-08-31")
    assert fit.code == {"source_sha256": None, "git_commit": None}  # a fit that records none
    if backtest_code:
        backtest_beside(fit, tmp_path / "old", code=backtest_code, targets=with_gate_failures(0))
        found = find_backtest(tmp_path / "old", fit.idata.attrs["data_checksum"], fit.config)
        (short,) = projection_notes.projection_calibration(fit, found, short=True)
        assert short.endswith(
            " This fit does not record the code it ran on, so whether the backtest's was the "
            "same is not known."
        )
    fit.idata.attrs.update(code_source_sha256="a" * 64, code_git_commit="c" * 40)
    assert fit.code == {"source_sha256": "a" * 64, "git_commit": "c" * 40}
    backtest_beside(fit, tmp_path, code=backtest_code, targets=with_gate_failures(0))
    found = find_backtest(tmp_path, fit.idata.attrs["data_checksum"], fit.config)
    assert found.code == (backtest_code or {})
    (short,) = projection_notes.projection_calibration(fit, found, short=True)
    (long,) = projection_notes.projection_calibration(fit, found)
    if note:
        assert short.endswith(note) and note in long
    else:
        assert "code" not in short and "other code" not in long and "record the code" not in long
