"""Warm start from what the world already knows: `searcher import` (cards -> [[enqueue]] blocks marked with their
source and published results) and [study] warm_start (another study's complete trials as history for the sampler,
kept out of the budget, the leaderboard and cards)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from conftest import requirement

from searcher import records
from searcher.search import space, strategy, warmstart
from searcher.records import storage
from searcher.config import load_study, parse_study
from searcher.errors import ConfigError
from searcher.hyperparams import rounded

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CARDS = Path(__file__).resolve().parent / "cards"
PUBLIC_CARD = ROOT.parent / "shared" / "examples" / "cards" / "bert-mini-sst2-distilled.README.md"

# A Trainer-style card of a run on the tiny world's data, with values inside the tiny study's ranges
TINY_CARD = """\
---
license: apache-2.0
tags:
- generated_from_trainer
model-index:
- name: tiny-polarity-student
  results:
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      name: tiny-polarity
      type: tiny-polarity
    metrics:
    - type: accuracy
      value: 0.75
      name: Accuracy
---

# tiny-polarity-student

This model was trained from scratch on the tiny-polarity dataset.
It achieves the following results on the evaluation set:
- Loss: 0.5
- Accuracy: 0.75

### Training hyperparameters

The following hyperparameters were used during training:
- learning_rate: 0.0042
- train_batch_size: 16
- eval_batch_size: 16
- seed: 7
- optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08
- lr_scheduler_type: linear
- num_epochs: 3
"""


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def study_of(path: Path) -> optuna.Study:
    config = load_study(path)
    return optuna.load_study(study_name=config.study.name, storage=config.storage_url())


# ---------------------------------------------------------------------------------------------------------------
# searcher import


def test_import_prints_the_public_card_as_a_marked_block(cli):
    if not PUBLIC_CARD.is_file():  # a skip on a fresh clone, a failure in CI (SEARCHER_TEST_REQUIRE names data)
        requirement("data", f"the public card is not at {PUBLIC_CARD} (CI has ../shared/examples; a fresh clone "
                            f"does not)")
    code, out, err = cli("import", PUBLIC_CARD)
    assert code == 0, err
    lines = out.splitlines()
    for line in ("learning_rate = 0.00021185586235152412", "batch_size = 1024", "epochs = 8",
                 "# not imported: optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08",
                 "# not imported: lr_scheduler_type: linear", "# not imported: mixed_precision_training: Native AMP",
                 "# learning_rate from learning_rate: 0.00021185586235152412 (card hyperparameters)",
                 "# note: set [study] seed = 33 (seed: 33, card hyperparameters)"):
        assert line in lines
    (entry,) = tomllib.loads(out)["enqueue"]
    assert entry["learning_rate"] == 0.00021185586235152412 and entry["batch_size"] == 1024
    assert entry["_source"] == str(PUBLIC_CARD)
    assert entry["_published"] == [{"dataset": "glue", "config": "sst2", "split": "validation",
                                    "metrics": {"accuracy": 0.856651376146789, "loss": 1.1792}}]


def test_import_of_nothing_is_exit_2_and_one_line_saying_what_it_looked_for(cli, tmp_path):
    code, out, err = cli("import", CARDS / "nothing.README.md")
    assert code == 2 and out == ""
    line = one_line(err)
    assert "no hyperparameters in" in line and "looked for a Trainer" in line and "searcher_trial.json" in line
    # several sources: one that gives nothing is the error, and nothing is printed or added
    study = tmp_path / "s.toml"
    study.write_text((ROOT / "studies" / "quickstart.toml").read_text())
    before = study.read_bytes()
    code, out, err = cli("import", CARDS / "searcher_trial.json", CARDS / "nothing.README.md", "--append", study)
    assert code == 2 and out == "" and "looked for" in one_line(err)
    assert study.read_bytes() == before


@pytest.fixture
def tiny_card(tmp_path) -> Path:
    path = tmp_path / "tiny-polarity.README.md"
    path.write_text(TINY_CARD)
    return path


def test_import_append_keeps_the_file_and_the_study_runs_the_imported_trial_first(world, cli, tmp_path,
                                                                                   tiny_card):
    path = world.study(tmp_path / "imp", name="imp", study={"n_trials": 1}, card={"dataset_name": "tiny-polarity"},
                       train={"latency": False})
    before = path.read_bytes()
    code, out, err = cli("import", tiny_card, "--append", path)
    assert code == 0, err
    assert "added 1 [[enqueue]] block(s)" in err
    assert "# epochs = 3: the study already trains with this value" in out
    after = path.read_bytes()
    assert after.startswith(before) and after[len(before):].decode() == "\n" + out
    (entry,) = load_study(path).enqueue
    assert entry == {"_source": str(tiny_card), "learning_rate": 0.0042, "batch_size": 16,
                     "_published": [{"dataset": "tiny-polarity", "split": "validation",
                                     "metrics": {"accuracy": 0.75, "loss": 0.5}}]}

    code, _, err = cli("-q", "optimize", path)
    assert code == 0, err
    (trial,) = study_of(path).trials
    assert trial.state == TrialState.COMPLETE
    assert trial.params["learning_rate"] == 0.0042 and trial.params["batch_size"] == 16
    assert trial.user_attrs["enqueued_from"] == str(tiny_card)
    assert trial.user_attrs["source_published"][0]["metrics"]["accuracy"] == 0.75
    assert trial.user_attrs["sampled_by"] == f"queued parameters ({tiny_card})"

    # the card shows the published figure beside the student's (same data, same split), and no local path
    code, out, err = cli("card", path, "--trial", 0, "--out", tmp_path / "cards")
    assert code == 0, err
    text = (Path(out.split()[0]) / "README.md").read_text()
    student = rounded(float(trial.user_attrs["metrics"]["accuracy"]))
    assert (f"The imported recipe's published accuracy: 0.75 (source: tiny-polarity.README.md); this student: "
            f"{student}.") in text.splitlines()
    assert "- Parameters chosen by: queued parameters (tiny-polarity.README.md)" in text.splitlines()


def test_import_append_reports_what_does_not_fit_and_never_clips(world, cli, tmp_path, tiny_card):
    path = world.study(tmp_path / "fit", name="fit")
    card = tmp_path / "wide.README.md"
    card.write_text(TINY_CARD.replace("- learning_rate: 0.0042", "- learning_rate: 0.05"))
    code, out, err = cli("import", card, "--append", path)
    assert code == 0, err
    assert "not imported:" in err and "learning_rate = 0.05 is outside [search] learning_rate" in err
    assert "widen it to import this value" in err
    (entry,) = load_study(path).enqueue
    assert "learning_rate" not in entry and entry["batch_size"] == 16  # left out, not clipped to 0.006

    # nothing fits at all: exit 2, one line, the file unchanged (a card of its own: this half runs in a fresh clone)
    nothing = tmp_path / "nothing.README.md"
    nothing.write_text(TINY_CARD.replace("- learning_rate: 0.0042", "- learning_rate: 0.05")
                       .replace("_batch_size: 16", "_batch_size: 48").replace("- num_epochs: 3", "- num_epochs: 5"))
    before = path.read_bytes()
    code, out, err = cli("-q", "import", nothing, "--append", path)
    assert code == 2 and "nothing to add to" in err.strip().splitlines()[-1], err
    assert path.read_bytes() == before


@pytest.mark.parametrize("entry, message", [
    ({"_source": 3, "learning_rate": 3e-3}, "_source must be a non-empty string"),
    ({"_published": [{"metrics": {"accuracy": 0.7}}], "learning_rate": 3e-3}, "_published needs _source"),
    ({"_source": "x", "_published": {"accuracy": 0.7}}, "_published must be a list of tables"),
    ({"_source": "x", "_published": [{"datset": "glue", "metrics": {"accuracy": 0.7}}]}, "unknown key 'datset'"),
    ({"_source": "x", "_published": [{"split": "validation", "metrics": {"accuracy": "high"}}]},
     "metrics must be a table of finite numbers"),
    ({"_sourse": "x"}, "unknown parameter '_sourse'"),
])
def test_enqueue_marks_are_checked(tmp_path, entry, message):
    raw = {"study": {"name": "s"}, "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
           "student": {"layers": [2], "hidden": [128]}, "search": {"learning_rate": [1e-3, 1e-2]},
           "enqueue": [entry]}
    with pytest.raises(ConfigError, match=message):
        space.check_enqueued(parse_study(raw, tmp_path / "s.toml"))


def test_enqueue_marks_become_user_attrs_not_params(tmp_path):
    published = [{"dataset": "glue", "config": "sst2", "split": "validation", "metrics": {"accuracy": 1}}]
    raw = {"study": {"name": "s"}, "data": {"train": "t.csv", "validation": "v.csv"}, "teacher": {"model": "m"},
           "student": {"layers": [2], "hidden": [128]}, "search": {"learning_rate": [1e-3, 1e-2]},
           "enqueue": [{"_source": "https://huggingface.co/acme/x", "_published": published, "learning_rate": 2e-3}]}
    config = parse_study(raw, tmp_path / "s.toml")
    assert space.check_enqueued(config) == [{"learning_rate": 2e-3}]
    ((params, attrs),) = space.enqueued(config)
    assert attrs == {"enqueued_from": "https://huggingface.co/acme/x",
                     "source_published": [{**published[0], "metrics": {"accuracy": 1.0}}]}


# ---------------------------------------------------------------------------------------------------------------
# warm_start: what is copied, what is dropped


def config_for(tmp_path, search=None, student=None, **study):
    raw = {"study": {"name": "target", "seed": 0, **study}, "data": {"train": "t.csv", "validation": "v.csv"},
           "teacher": {"model": "m"}, "student": student or {"layers": [1, 2], "hidden": [64], "init": "random"},
           "search": search or {"learning_rate": [1e-4, 1e-2], "batch_size": [16, 32], "temperature": [1.0, 4.0],
                                "alpha": 0.5, "epochs": 3}}
    return parse_study(raw, tmp_path / "target.toml")


def source_trial(value, params, hyperparams=None, kinds=None):
    dists = {"learning_rate": FloatDistribution(1e-6, 1.0, log=True), "batch_size": CategoricalDistribution([16, 32]),
             "temperature": FloatDistribution(1.0, 20.0), "layers": CategoricalDistribution([1, 2]),
             "optim": CategoricalDistribution(["adamw", "sgd"]), **(kinds or {})}
    attrs = {"hyperparams": hyperparams} if hyperparams else {}
    return create_trial(value=value, params=params, distributions={k: dists[k] for k in params}, user_attrs=attrs)


def test_copies_keep_what_fits_and_count_what_is_dropped(tmp_path):
    config = config_for(tmp_path)
    source = optuna.create_study(direction="maximize")
    good = {"learning_rate": 1e-3, "batch_size": 16, "temperature": 2.0, "layers": 2}
    source.add_trial(source_trial(0.8, {**good, "optim": "adamw"}))  # optim: dropped parameter
    source.add_trial(source_trial(0.7, {**good, "learning_rate": 0.5}))  # outside [1e-4, 1e-2]
    source.add_trial(source_trial(0.6, {k: v for k, v in good.items() if k != "temperature"}))  # missing
    # temperature fixed in the source: its records say which, so the trial is complete here
    source.add_trial(source_trial(0.65, {k: v for k, v in good.items() if k != "temperature"},
                                  hyperparams={"temperature": 3.0, "alpha": 0.5, "epochs": 3}))
    source.add_trial(source_trial(0.5, good, hyperparams={"epochs": 5}))  # trained longer than this study's 3
    source.add_trial(source_trial(0.55, {**good, "batch_size": 16},  # searched as another kind
                                  kinds={"batch_size": IntDistribution(8, 64)}))
    source.add_trial(create_trial(state=TrialState.PRUNED))

    target = optuna.create_study(direction="maximize")
    report = warmstart.copy_trials(target, config, source, "sqlite:///src.db::src")
    assert (report.complete, report.copied) == (6, 2)
    assert report.dropped_trials == {"learning_rate outside [0.0001, 0.01] (log)": 1, "missing temperature": 1,
                                     "epochs other than the 3 this study fixes": 1, "missing batch_size": 1}
    assert report.dropped_params == {"optim": 1, "batch_size": 1}
    line = report.line()
    assert line.startswith("warm start: copied 2 of 6 complete trials of sqlite:///src.db::src; dropped 4 trials (")
    assert "optim (1 trials)" in line and "\n" not in line
    first, second = target.trials
    assert first.params == good and first.values == [0.8]
    assert second.params == {**good, "temperature": 3.0} and second.values == [0.65]
    assert first.user_attrs == {"warm_start_source": "sqlite:///src.db::src", "warm_start_trial": 0}
    assert first.distributions["learning_rate"] == space.distributions(config)["learning_rate"]


def test_teacher_initialised_copies_have_no_hidden(tmp_path):
    config = config_for(tmp_path, student={"layers": [1, 2], "hidden": [64, 128], "init": ["random", "teacher"]},
                        search={"learning_rate": [1e-4, 1e-2], "batch_size": 16, "temperature": 2.0, "alpha": 0.5})
    source = optuna.create_study(direction="maximize")
    init = CategoricalDistribution(["random", "teacher"])
    source.add_trial(create_trial(value=0.7, params={"learning_rate": 1e-3, "init": "teacher", "layers": 2},
                                  distributions={"learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
                                                 "init": init, "layers": CategoricalDistribution([1, 2])},
                                  user_attrs={"student": {"layers": 2, "hidden": 384, "init": "teacher"}}))
    target = optuna.create_study(direction="maximize")
    assert warmstart.copy_trials(target, config, source, "src").copied == 1
    assert target.trials[0].params == {"learning_rate": 1e-3, "init": "teacher", "layers": 2}


def test_warm_start_entries_are_checked_when_the_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"warm_start entry 'other.db' must be \"STORAGE_URL::STUDY_NAME\""):
        config_for(tmp_path, warm_start=["other.db"])
    with pytest.raises(ConfigError, match=r"\[study\] warm_start must be a string, got 3"):
        config_for(tmp_path, warm_start=[3])
    with pytest.raises(ConfigError, match=r"'postgresql://u:\*\*\*@h/db::' must be"):  # no password in the error
        config_for(tmp_path, warm_start=["postgresql://u:secret@h/db::"])
    assert config_for(tmp_path, warm_start="sqlite:////a.db::a").study.warm_start == ("sqlite:////a.db::a",)


def test_own_trials_leave_copies_out_of_every_count_and_front():
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(values=[0.99, 1.0], params={"x": 0.1}, distributions=dist,
                                 user_attrs={"warm_start_source": "s", "warm_start_trial": 0}))  # dominates all
    study.add_trial(create_trial(values=[0.8, 3.0], params={"x": 0.2}, distributions=dist))
    study.add_trial(create_trial(values=[0.7, 2.0], params={"x": 0.3}, distributions=dist))
    study.add_trial(create_trial(values=[0.6, 4.0], params={"x": 0.4}, distributions=dist))  # dominated
    study.add_trial(create_trial(state=TrialState.PRUNED))
    assert [t.number for t in records.own_trials(study)] == [1, 2, 3, 4]
    assert [t.number for t in records.ranked(study)] == [1, 2, 3]
    assert [t.number for t in records.pareto(study)] == [1, 2]  # not study.best_trials, which is [0]
    assert records.state_counts(study)["COMPLETE"] == 3
    assert records.rank_of(study, 0) is None
    with pytest.raises(Exception, match="is a copy of trial 0 of s"):
        records.select(study, trial=0)


def test_the_median_pruner_waits_for_its_start_up_count_of_own_trials(tmp_path):
    """Copies have no per-epoch values: they must not satisfy the pruner's start-up count on their own."""
    def second_trial_pruned(config) -> bool:
        study = optuna.create_study(direction="maximize", pruner=strategy.pruner_for(config))
        dist = {"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}
        for i in range(3):
            study.add_trial(create_trial(value=0.9, params={"learning_rate": 1e-3}, distributions=dist,
                                         user_attrs={"warm_start_source": "s", "warm_start_trial": i}))
        study.add_trial(create_trial(value=0.9, params={"learning_rate": 1e-3}, distributions=dist,
                                     intermediate_values={1: 0.9}))  # this study's first own trial
        trial = study.ask()
        trial.report(0.5, step=1)
        return trial.should_prune()

    pruner = {"type": "median", "n_startup_trials": 2}
    assert not second_trial_pruned(config_for(tmp_path, pruner=pruner, warm_start=["sqlite:////a.db::a"]))
    assert second_trial_pruned(config_for(tmp_path, pruner=pruner))  # what the copies would do unchecked
    assert "n_min_trials=2" in strategy.strategy_attrs(config_for(tmp_path, pruner=pruner,
                                                                 warm_start=["sqlite:////a.db::a"]))[
        storage.ATTR_PRUNER]


# ---------------------------------------------------------------------------------------------------------------
# warm_start: TPE starts where the good trials were


def peak(lr: float) -> float:
    return 0.9 - 0.05 * (math.log10(lr) + 4.0) ** 2  # best at learning_rate 1e-4


def first_suggestions(config, source=None, n=5) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=strategy.sampler_for(config))
    if source is not None:
        warmstart.copy_trials(study, config, source, "synthetic")
    out = []
    for _ in range(n):
        trial = study.ask()
        plan = space.suggest(trial, config)
        out.append(plan.hyperparams.learning_rate)
        study.tell(trial, peak(plan.hyperparams.learning_rate))
    return out


def test_a_warm_started_study_suggests_near_the_good_trials_from_its_first_trial(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = source.ask()
        source.tell(trial, peak(trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)))
    warm_dist, cold_dist = [], []
    for seed in range(5):
        config = config_for(tmp_path, seed=seed, student={"layers": [2], "hidden": [128], "init": "random"},
                            search={"learning_rate": [1e-6, 1e-1], "batch_size": 32, "temperature": 2.0,
                                    "alpha": 0.5})
        warm_dist += [abs(math.log10(lr) + 4) for lr in first_suggestions(config, source)]
        cold_dist += [abs(math.log10(lr) + 4) for lr in first_suggestions(config)]
    warm, cold = statistics.median(warm_dist), statistics.median(cold_dist)
    # the cold study's first trials are TPE's random start-up (uniform over 5 decades: median about 1.25 decades
    # away); the copies satisfy the start-up count, so the warm study's TPE proposes near 1e-4 at once
    assert cold > 0.8, cold_dist
    assert warm < 0.6 and warm < cold / 2, (warm, cold)

    def within_a_decade(distances):
        return sum(d < 1.0 for d in distances) / len(distances)

    assert within_a_decade(warm_dist) >= 0.9 and within_a_decade(cold_dist) <= 0.6, (warm_dist, cold_dist)


# ---------------------------------------------------------------------------------------------------------------
# warm_start end to end on the tiny world


@pytest.fixture(scope="module")
def finished_a(world, tmp_path_factory):
    from searcher.cli import main

    path = world.study(tmp_path_factory.mktemp("warm-a"), name="a", study={"n_trials": 2}, train={"latency": False})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def test_a_warm_started_study_copies_keeps_them_out_of_budget_leaderboard_and_cards(world, finished_a, cli,
                                                                                     tmp_path):
    source = f"{load_study(finished_a).storage_url()}::a"
    path = world.study(tmp_path / "b", name="b", study={"n_trials": 1, "warm_start": [source]},
                       train={"latency": False})
    code, _, err = cli("optimize", path, "--no-progress")
    assert code == 0, err
    assert f"warm start: copied 2 of 2 complete trials of {source}" in err
    a, b = study_of(finished_a), study_of(path)
    copies = [t for t in b.trials if records.is_warm_start(t)]
    own = records.own_trials(b)
    assert len(copies) == 2 and len(own) == 1  # n_trials = 1 counts only this study's own trials
    assert {t.user_attrs["warm_start_source"] for t in copies} == {source}
    assert sorted(t.values[0] for t in copies) == sorted(t.values[0] for t in a.trials)
    assert all(not t.intermediate_values and "model_dir" not in t.user_attrs for t in copies)

    code, out, _ = cli("best", path, "--json")
    assert code == 0 and sorted(row["trial"] for row in json.loads(out)) == sorted(t.number for t in own)
    code, out, _ = cli("best", path)
    assert "study b: 1 complete, 0 pruned" in out
    code, _, err = cli("card", path, "--trial", copies[0].number)
    assert code == 2 and "is a copy of trial" in one_line(err) and "warm_start" in err
    code, out, err = cli("card", path, "--best", "--out", tmp_path / "cards")
    assert code == 0, err
    text = (Path(out.split()[0]) / "README.md").read_text()
    assert "- Trials: 1 complete, 0 pruned, 0 failed" in text and "ranked 1 of 1 complete trials" in text

    # resuming copies nothing again, and no longer needs the source
    Path(load_study(finished_a).storage_url()[len("sqlite:///"):]).rename(tmp_path / "moved.db")
    code, _, err = cli("optimize", path, "--no-progress")
    assert code == 0, err
    assert "warm start" not in err and "n_trials = 1" in err
    assert len(study_of(path).trials) == 3
    Path(tmp_path / "moved.db").rename(load_study(finished_a).storage_url()[len("sqlite:///"):])


def test_warm_start_sources_that_cannot_be_used_stop_before_the_study_exists(world, cli, tmp_path):
    missing = tmp_path / "missing.db"
    path = world.study(tmp_path / "c", name="c", study={"warm_start": [f"sqlite:///{missing}::x"]})
    code, _, err = cli("optimize", path)  # one line, before the data and the teacher are prepared
    assert code == 2 and "does not exist" in one_line(err) and "[study] warm_start" in err
    assert not missing.exists()  # not created empty
    assert not (tmp_path / "c" / "c.db").exists()  # and the study was not created either

    other = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(storage=other, study_name="min", direction="minimize")
    path = world.study(tmp_path / "d", name="d", study={"warm_start": [f"{other}::min"]})
    code, _, err = cli("optimize", path)
    assert code == 2 and "the same objectives and directions" in one_line(err)
    path = world.study(tmp_path / "e", name="e", study={"warm_start": [f"{other}::nope"]})
    code, _, err = cli("optimize", path)
    assert code == 2 and "no study named 'nope' there (studies: min)" in one_line(err)


def test_warm_start_refuses_the_study_itself_however_its_url_is_spelled(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    optuna.create_study(storage=url, study_name="target", direction="maximize")  # resumed: it exists
    (tmp_path / "link").symlink_to(tmp_path)
    monkeypatch.chdir(tmp_path)
    opened = storage.open_storage(url)
    for spelling in (f"sqlite:///{tmp_path}/./w.db", f"sqlite:///{tmp_path / 'link' / 'w.db'}", "sqlite:///w.db",
                     f"{url}?timeout=5"):
        config = config_for(tmp_path, warm_start=[f"{spelling}::target"])
        with pytest.raises(ConfigError, match=r"\[study\] warm_start names this study itself"):
            warmstart.pending(config, opened, url)
    # another study in the same file is a source like any other
    optuna.create_study(storage=url, study_name="other", direction="maximize")
    config = config_for(tmp_path, warm_start=["sqlite:///w.db::other"])
    assert [name for name, _ in warmstart.pending(config, opened, url)] == ["sqlite:///w.db::other"]


def test_a_source_that_gave_no_copy_is_read_once(tmp_path):
    source_url = f"sqlite:///{tmp_path / 'src.db'}"
    source = optuna.create_study(storage=source_url, study_name="src", direction="maximize")
    source.add_trial(source_trial(0.8, {"learning_rate": 0.5, "batch_size": 16, "temperature": 2.0, "layers": 2}))
    entry = f"{source_url}::src"
    config = config_for(tmp_path, warm_start=[entry])
    url = f"sqlite:///{tmp_path / 'target.db'}"
    opened = storage.open_storage(url)
    study = optuna.create_study(storage=opened, study_name="target", direction="maximize")
    (report,) = warmstart.add(study, config, warmstart.pending(config, opened, url))
    assert (report.copied, report.complete) == (0, 1)  # its one trial is outside this study's learning_rate range
    # resumed: the source is not read again, so it need not even be there
    (tmp_path / "src.db").rename(tmp_path / "moved.db")
    assert warmstart.pending(config, opened, url) == []
    warmstart.check(config, url)
    assert study.user_attrs["searcher:warm_started"] == {entry: {"copied": 0, "complete": 1}}
