"""Config: defaults, TOML merge, validation, hashing, and the project's own config file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import Anchor, Config, ConfigError, Event, Priors

ROOT = Path(__file__).resolve().parents[1]


def test_library_defaults_are_generic():
    config = Config()
    assert config.answers == ("talks", "continue", "undecided")
    assert config.questions is None and config.reference_question is None
    assert config.house_effects == "zero_sum" and config.events == () and config.anchors == ()
    assert config.grid == "week"
    assert config.sampler.nuts_sampler == "nutpie"


def test_model_forms_are_every_field_that_chooses_the_models_form():
    """A Config field added later is a model form (SBC carries it over, the bench's reference
    must implement it) or one of the others, named here: the table's selection and
    identification, the grid, dates, events, priors, sampler, presentation and storage."""
    import dataclasses

    from model.config import CANDIDATES, MODEL_FORMS

    others = {"answers", "questions", "exclude_flags", "reference_question", "grid", "through"}
    others |= {"house_effects", "anchors", "events", "priors", "sampler", "interval"}
    others |= {"stored_precision"}
    fields = {f.name for f in dataclasses.fields(Config)}
    assert fields == set(MODEL_FORMS) | others and not set(MODEL_FORMS) & others
    # each candidate changes a model form, and may set priors with it (SBC carries the fit's priors)
    assert all(set(changes) & set(MODEL_FORMS) for changes in CANDIDATES.values())
    assert {f for changes in CANDIDATES.values() for f in changes} <= {*MODEL_FORMS, "priors"}


def test_a_fixed_persistence_needs_the_momentum_trend_and_at_most_one():
    """priors.slope_persistence that no trend would use, past 1, or not a number is refused by
    name; a candidate that sets the trend leaves the fit config's fixed persistence behind."""
    from model.config import CANDIDATES

    with pytest.raises(ConfigError, match="0.9 with trend = 'damped'; it fixes only trend"):
        Config(trend="damped", priors=Priors(slope_persistence=0.9))
    with pytest.raises(ConfigError, match=r"1.2; expected a monthly persistence in \(0, 1\]"):
        Config(trend="momentum", priors=Priors(slope_persistence=1.2))
    for bad in (True, "0.9"):
        with pytest.raises(ConfigError, match=f"priors.slope_persistence: {bad!r}; expected a pos"):
            Config(trend="momentum", priors=Priors(slope_persistence=bad))
    fixed = Config(trend="momentum").replace(priors={"slope_persistence": 1.0})
    for name in ("drift", "damped", "momentum"):
        assert fixed.replace(**CANDIDATES[name]).priors.slope_persistence is None
    assert fixed.replace(**CANDIDATES["momentum_fixed"]).priors.slope_persistence == 0.975


def test_toml_merges_over_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'grid = "month"\n[sampler]\ndraws = 50\n[[events]]\ndate = "2022-09-21"\nlabel = "x"\n'
    )
    config = Config.from_toml(path)
    assert config.grid == "month"
    assert config.sampler.draws == 50 and config.sampler.tune == Config().sampler.tune
    assert config.events == (Event("2022-09-21", "x"),)


def test_unknown_key_and_bad_values_are_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('gird = "month"\n')
    with pytest.raises(ConfigError, match="unknown keys.*gird"):
        Config.from_toml(path)
    with pytest.raises(ConfigError, match="grid"):
        Config(grid="year")
    with pytest.raises(ConfigError, match="anchors"):
        Config(house_effects="anchors")
    with pytest.raises(
        ConfigError, match="walk_prior: 'exponential'; expected 'half_normal' or 'gamma'"
    ):
        Config(walk_prior="exponential")
    with pytest.raises(
        ConfigError, match="nonsampling_prior: 'flat'; expected 'half_normal' or 'gamma'"
    ):
        Config(nonsampling_prior="flat")
    with pytest.raises(
        ConfigError, match="sampler.knots: 'loose'; expected 'auto', 'centred' or 'non_centred'"
    ):
        Config().replace(sampler={"knots": "loose"})
    for form in ("house_form", "question_form"):
        with pytest.raises(
            ConfigError,
            match=f"sampler.{form}: 'loose'; expected 'auto', 'centred' or 'non_centred'",
        ):
            Config().replace(sampler={form: "loose"})
    with pytest.raises(
        ConfigError, match="sampler.log_density: 'fast'; expected 'auto' or 'pytensor'"
    ):
        Config().replace(sampler={"log_density": "fast"})
    with pytest.raises(ConfigError, match="target_accept"):
        Config().replace(sampler={"target_accept": 1.5})
    with pytest.raises(
        ConfigError,
        match=r"sampler.retry_target_accept: 0.8; expected a value between target_accept \(0.9\) and 1",
    ):
        Config().replace(sampler={"retry_target_accept": 0.8})
    for ladder in ([0.999, 0.99], [0.95, 1.0], [], [0.95, "0.99"]):
        with pytest.raises(ConfigError, match="a list of such values in ascending order"):
            Config().replace(sampler={"retry_target_accept": ladder})
    for draws in (0, -5, 2000.5, True, "4000"):
        with pytest.raises(
            ConfigError,
            match=r"sampler.retry_draws: .*; expected a positive whole number of draws a chain",
        ):
            Config().replace(sampler={"retry_draws": draws})
    assert Config().replace(sampler={"retry_draws": 4000}).sampler.retry_draws == 4000
    # not more than draws: allowed, and never sampled longer (diagnostics.may_sample_longer)
    assert Config().replace(sampler={"retry_draws": 500}).sampler.retry_draws == 500
    with pytest.raises(ConfigError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("grid = \n")
        Config.from_toml(tmp_path / "bad.toml")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('interval = "0.9"', "interval: '0.9'; expected a probability between 0 and 1"),
        ('[sampler]\ndraws = "2000"', "sampler.draws: '2000'; expected a whole number"),
        ("[sampler]\ndraws = 20.5", "sampler.draws: 20.5; expected a whole number"),
        ("[sampler]\nchains = true", "sampler.chains: True; expected a whole number"),
        ('[sampler]\ntarget_accept = "0.95"', "sampler.target_accept: '0.95'; expected a value"),
        ('[sampler]\nnuts_sampler = "stan"', "sampler.nuts_sampler: 'stan'; expected 'nutpie'"),
        ('exclude_flags = "disputed"', "exclude_flags: 'disputed'; expected a list of names"),
        ('questions = "Q1"', "questions: 'Q1'; expected a list of names"),
        ('answers = "talks"', "answers: 'talks'; expected a list of names"),
        ("reference_question = 3", "reference_question: 3; expected a question id"),
        ('[[events]]\ndate = 20220921\nlabel = "x"', "events[0].date: 20220921; expected an ISO"),
        ('[[events]]\ndate = "2022-9-21"\nlabel = "x"', "events[0].date: '2022-9-21'; expected"),
        ('[[events]]\ndate = "2022-09-21"\nlable = "x"', "events[0]: unknown keys ['lable']"),
        (
            '[[events]]\ndate = "2022-09-21"',
            "events[0]: missing ['label']; expected ['date', 'label']",
        ),
        ("[sampler]\ndrawz = 3", "sampler: unknown keys ['drawz']; expected some of ['draws',"),
        ("[priors]\nhouse_sd = 'x'", "priors.house_sd: 'x'; expected a positive number"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_what_was_expected(tmp_path, toml, message):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        Config.from_toml(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_a_toml_date_and_a_notebooks_lists_and_tables_are_read(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[events]]\ndate = 2022-09-21\nlabel = "mobilisation"\n')
    config = Config.from_toml(path)
    assert config.events == (Event(date="2022-09-21", label="mobilisation"),)
    assert json.loads(json.dumps(config.to_dict()))["events"][0]["date"] == "2022-09-21"
    built = Config(exclude_flags=["disputed"], sampler={"draws": 10}, priors={"house_sd": 0.2})
    assert built.exclude_flags == ("disputed",) and built.sampler.draws == 10
    assert built.priors.house_sd == 0.2 and built.sampler.tune == Config().sampler.tune
    assert Config(events=[{"date": "2022-09-21", "label": "m"}]).events == (
        Event(date="2022-09-21", label="m"),
    )


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"interval = 0.9\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c.toml: not UTF-8 text \(byte 20\)"):
        Config.from_toml(path)


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    """Some Windows editors start UTF-8 with a byte-order mark: an encoding mark, not TOML."""
    path = tmp_path / "c.toml"
    path.write_bytes('grid = "month"\n[sampler]\ndraws = 50\n'.encode("utf-8-sig"))
    config = Config.from_toml(path)
    assert config.grid == "month" and config.sampler.draws == 50


def test_hash_is_stable_and_sensitive():
    assert Config().hash() == Config().hash()
    assert Config().hash() != Config(grid="day").hash()
    assert Config().hash() != Config().replace(priors={"house_sd": 0.2}).hash()


def test_round_trip_through_dict():
    config = Config(events=(Event("2022-09-21", "mobilisation"),), questions=("A", "B"))
    assert Config.from_dict(config.to_dict()) == config


def test_project_config_uses_the_main_curve_questions():
    config = Config.from_toml(ROOT / "config" / "fit.toml")
    questions = pd.read_csv(ROOT / "data" / "questions.csv")
    main = set(questions.loc[questions["main_curve"], "question_id"])
    assert set(config.questions) == main
    assert config.reference_question == "LEVADA_CONTINUE_VS_TALKS"
    assert [e.date for e in config.events] == ["2022-09-21"]


def test_event_labels_must_be_unique():
    with pytest.raises(ConfigError, match="labels \\['x'\\] are used more than once"):
        Config(events=(Event("2022-09-21", "x"), Event("2023-01-01", "x")))


def test_a_known_share_is_given_once():
    twice = (Anchor("2024-06-01", "talks", 45.0), Anchor("2024-06-01", "talks", 47.0))
    with pytest.raises(ConfigError, match="\\['talks on 2024-06-01'\\] given more than once"):
        Config(house_effects="anchors", anchors=twice)
    Config(house_effects="anchors", anchors=(twice[0], Anchor("2024-06-01", "continue", 40.0)))


def test_a_known_share_is_known_to_within_a_positive_sd():
    """An sd of 0 makes the anchor's normal density undefined (a fit that cannot start)."""
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=r"anchors\[0\]\.sd_pp: .*expected a number above 0"):
            Config(house_effects="anchors", anchors=(Anchor("2024-06-01", "talks", 45.0, bad),))


def test_through_is_a_date_today_or_nothing(tmp_path):
    import datetime

    assert Config().through is None and Config().resolved() == Config()
    assert (
        Config(through="today").resolved(today=datetime.date(2026, 11, 28)).through == "2026-11-28"
    )
    assert (
        Config(through="2026-03-01").resolved(today=datetime.date(2026, 11, 28)).through
        == "2026-03-01"
    )
    for bad in ("tomorrow", "2026-13-01", "2026-3-1", "28.11.2026"):
        with pytest.raises(
            ConfigError, match=f"through: '{bad}'; expected a date YYYY-MM-DD, 'today'"
        ):
            Config(through=bad)
    path = tmp_path / "c.toml"
    path.write_text("through = 2026-11-28\n")  # TOML's bare date
    assert Config.from_toml(path).through == "2026-11-28"
    path.write_text('through = "today"\n')
    assert Config.from_toml(path).through == "today"
    assert Config(through="today").hash() != Config(through="2026-11-28").hash()


def test_project_config_runs_the_curve_to_today():
    assert Config.from_toml(ROOT / "config" / "fit.toml").through == "today"


def test_a_retry_ladder_reads_from_toml_as_a_tuple(tmp_path):
    path = tmp_path / "fit.toml"
    path.write_text("[sampler]\ntarget_accept = 0.95\nretry_target_accept = [0.99, 0.999]\n")
    sampler = Config.from_toml(path).sampler
    assert sampler.retry_target_accept == (0.99, 0.999)
    assert sampler.retry_ladder == (0.99, 0.999)
    assert Config.from_dict(Config.from_toml(path).to_dict()).sampler == sampler  # config.json
    assert Config().replace(sampler={"retry_target_accept": 0.99}).sampler.retry_ladder == (0.99,)
    assert Config().sampler.retry_ladder == ()


def test_today_is_the_last_readings_field_end_where_that_is_later():
    today = Config(through="today")
    november, october = pd.Timestamp("2026-11-30"), pd.Timestamp("2026-10-31")
    # A reading known only as "November 2026" ends on the 30th: a fit on the 28th runs to it.
    assert today.resolved(dt.date(2026, 11, 28), data_end=november).through == "2026-11-30"
    assert today.resolved(dt.date(2026, 11, 28), data_end=october).through == "2026-11-28"
    assert Config(through="2026-12-31").resolved(data_end=november).through == "2026-12-31"


def test_replace_names_an_unknown_sampler_or_prior_key():
    with pytest.raises(ConfigError, match=r"sampler: unknown keys \['bogus'\]; expected some of"):
        Config().replace(sampler={"bogus": 1})
    with pytest.raises(ConfigError, match=r"priors: unknown keys \['house'\]"):
        Config().replace(priors={"house": 1.0})
    assert Config().replace(sampler={"retry_draws": np.int64(4000)}).sampler.retry_draws == 4000
