"""Study-file validation: every bad input is one line that names the key, the file and the fix."""

from pathlib import Path

import pytest
from conftest import to_toml

from searcher.config import tomllib

from searcher.config import Choices, FloatRange, Fixed, IntRange, load_study, resolved_dict
from searcher.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


BASE = """
[study]
name = "x"
[data]
train = "train.csv"
validation = "dev.csv"
[teacher]
model = "some/teacher"
[student]
layers = [2, 4]
hidden = [128, 256]
"""


def test_minimal_file_gets_defaults(tmp_path):
    c = load_study(write(tmp_path, BASE))
    assert c.study.objectives == ("accuracy",)
    assert c.study.pruner.type == "median"
    assert c.storage_url() == f"sqlite:///{tmp_path}/x.db"
    assert c.output_dir == tmp_path / "x"
    assert isinstance(c.search.learning_rate, FloatRange) and c.search.learning_rate.log


@pytest.mark.parametrize("snippet, message", [
    ("[search]\nlerning_rate = 0.1", "[search] unknown key 'lerning_rate'; did you mean 'learning_rate'?"),
    ("[search]\nlr = 0.1", "[search] unknown key 'lr'; allowed: alpha, attention_weight, augment, batch_size"),
    ("[serch]\nalpha = 0.5", "unknown section 'serch'; did you mean 'search'?"),
    ("[study]\nn_trials = \"ten\"", "[study] n_trials must be an integer, got 'ten'"),
    ("[search]\nlearning_rate = [1e-3, 1e-5]", "the range [0.001, 1e-05] is impossible (low > high)"),
    ("[search]\nalpha = [0.0, 2.0]", "[search] alpha must lie in [0, 1] (weight of the label"),
    ("[search]\ntemperature = [0, 4]", "[search] temperature must lie in (0, inf)"),
    ("[search]\nbatch_size = [16, \"big\"]", "batch_size must be an integer or a list of them"),
    ("[student]\nhidden = [100]", "hidden 100 is not a multiple of 64"),
    ("[student]\ninit = \"magic\"", "init must be one of 'pretrained', 'teacher', 'random'"),
    ("[study]\ndirections = [\"maximize\", \"minimize\"]\npruner = \"median\"", "needs a single objective"),
    ("[teacher]\nbase = \"b\"", "give exactly one of model"),
    ("[data]\ntext_columns = [\"a\", \"b\", \"c\"]", "text_columns takes one column or two"),
    ("[hub]\npush = \"best\"", "needs repo_id"),
    ("[study]\nsampler = \"bayes\"", '[study] sampler must be one of "tpe", "gp", "random", "cmaes", "nsga2"'),
    ("[study]\nsampler = { type = \"gp\", popsize = 4 }", "sampler: option 'popsize' does not apply to type 'gp'"),
    ("[study]\nsampler = { type = \"tpe\", n_startup = 4 }", "unknown option 'n_startup'; did you mean "
                                                             "'n_startup_trials'?"),
    ("[study]\nsampler = { type = \"tpe\", n_startup_trials = -1 }", "sampler.n_startup_trials must be >= 0"),
    ("[study]\nsampler = { type = \"tpe\", multivariate = 1 }", "sampler.multivariate must be true or false"),
    ("[study]\nsampler = { type = \"cmaes\", sigma0 = 0 }", "sampler.sigma0 must be > 0"),
    ("[study]\nsampler = 3", "sampler must be one of \"tpe\""),
    ("[study]\nsampler = \"nsga2\"", "ranks trials by Pareto dominance, which needs two or more objectives"),
    ("[study]\ndirections = [\"maximize\", \"minimize\"]\nsampler = \"cmaes\"", "optimizes one objective"),
    ("[study]\npruner = \"wilcoxon\"", '[study] pruner must be one of "median", "hyperband", "successive_halving"'),
    ("[study]\npruner = { type = \"hyperband\", patience = 2 }", "option 'patience' does not apply to type "
                                                                 "'hyperband' (its options: reduction_factor)"),
    ("[study]\npruner = { type = \"successive_halving\", reduction_factor = 1 }", "reduction_factor must be >= 2"),
    ("[study]\npruner = { type = \"patient\", patience = 1 }", "patience = 1 can never stop a trial of 3 epochs"),
    ("[study]\ndirections = [\"maximize\", \"minimize\"]\npruner = \"hyperband\"",
     "so every trial runs all its epochs (to spend less, use fewer epochs or a single-objective study first)"),
    ("[study]\nsampler = \"cmaes\"\n[student]\ninit = [\"random\", \"teacher\"]\nhidden = [128, 256]",
     'sampler = "cmaes" needs a fixed search space'),
    ("[study]\nstop = 5", "[study] stop must be a table"),
    ("[study]\nstop = { min_delta = 0.01 }", "stop needs patience = N"),
    ("[study]\nstop = { patience = 0 }", "stop.patience must be a positive number of trials"),
    ("[study]\nstop = { patiense = 3 }", "stop: unknown option 'patiense'; did you mean 'patience'?"),
    ("[study]\nstop = { patience = 3, min_delta = -0.1 }", "stop.min_delta must be >= 0"),
    ("[study]\nstop = { patience = 3, min_trials = 5 }", "min_trials applies to the terminator"),
    ("[study]\ndirections = [\"maximize\", \"minimize\"]\nstop = { patience = 3 }", "stop needs a single objective"),
    ("[study]\ndirections = [\"minimize\"]\nobjectives = [\"latency_ms\"]\nstop = { terminator = true }",
     "the terminator needs min_delta (the noise of 'latency_ms'"),
    # issue 24's probe: each was accepted, then failed a trial (or trained it in full) or misled
    ("[data.augment]\nngram_range = [5, 1]", "ngram_range must be [low, high] with 1 <= low <= high, got [5, 1]"),
    ("[study]\nobjectives = [\"accuracy@\"]", "objective 'accuracy@' names no format after '@'"),
    ("[study]\nobjectives = [\"accuracy@pytorch\"]\n[export]\nformats = []",
     "is measured on the exported students, and [export] formats = [] turns export off"),
    ("[study]\nobjectives = [\"accuracy@tflite\"]", "'tflite' is not a form searcher measures; use one of onnx, "
                                                   "onnx-int8, pytorch"),
    ("[data]\nmax_transfer_samples = 100", "max_transfer_samples caps the transfer set, and there is none"),
    ("[hub]\nrepo_id = \"acme/{study.nope}\"", "[hub] repo_id 'acme/{study.nope}' uses {study.nope}; it may use"),
    ("[hub]\nrepo_id = \"acme/{trial:>50000000}\"", "{trial:>50000000} is not allowed"),
    ("[hub]\nrepo_id = \"acme/{trial[0]}\"", "uses {trial[0]}"),
    # issue 28: an empty delimiter was told to "set label_delimiter"
    ("[data]\nlabel_delimiter = \"\"", "[data] label_delimiter must not be empty"),
    ("[hub]\nrepo_id = \"acme/{study}-\" \n[card]\nlicense = \"mit\"", None),  # fine: checked below
])
def test_bad_input_names_the_key_and_the_fix(tmp_path, snippet, message):
    doc = tomllib.loads(BASE)
    for section, table in tomllib.loads(snippet).items():
        doc.setdefault(section, {}).update(table)
    if message is None:  # a good one next to the bad ones
        load_study(write(tmp_path, to_toml(doc)))
        return
    with pytest.raises(ConfigError) as e:
        load_study(write(tmp_path, to_toml(doc)))
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert str(tmp_path / "s.toml") in str(e.value) or "section" not in message


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(write(tmp_path, "[study\nname="))
    with pytest.raises(ConfigError, match="is a folder; pass the path of a .toml study file"):
        load_study(tmp_path)


def test_a_study_file_that_is_not_utf8_is_one_line(tmp_path, cli):
    path = tmp_path / "s.toml"
    path.write_bytes(BASE.encode() + b"# caf\xe9 in latin-1\n")
    with pytest.raises(ConfigError, match="not UTF-8 text .* save the study file as UTF-8"):
        load_study(path)
    code, _, err = cli("optimize", path)
    assert code == 2 and "not UTF-8 text" in err and "Traceback" not in err


def test_repo_id_templates_render_only_short_names():
    from searcher.config import repo_id

    repo_id.check_template("acme/{study}-L{layers}-H{hidden}-t{trial:04d}")
    assert repo_id.render("acme/{study}-t{trial:04d}", "sst2", None) == "acme/sst2-t0000"
    for bad in ("acme/{study.__class__}", "acme/{hidden!r}", "acme/{x}", "acme/{trial:{study}}", "acme/" + "a" * 300):
        with pytest.raises(ConfigError):
            repo_id.check_template(bad)


def test_dimensions_parse_as_documented(tmp_path):
    c = load_study(write(tmp_path, BASE + """
[search]
learning_rate = 0.0003
batch_size = [16, 32, 64]
temperature = {low = 1, high = 8, log = true}
alpha = [0.5]
epochs = [2, 6]
"""))
    assert c.search.learning_rate == Fixed(0.0003)
    assert c.search.batch_size == Choices((16, 32, 64))
    assert c.search.temperature == FloatRange(1.0, 8.0, True)
    assert c.search.alpha == Fixed(0.5)
    assert c.search.epochs == IntRange(2, 6)


def test_storage_precedence(tmp_path, monkeypatch):
    c = load_study(write(tmp_path, BASE.replace('name = "x"', 'name = "x"\nstorage = "sqlite:////tmp/f.db"')))
    assert c.storage_url() == "sqlite:////tmp/f.db"
    monkeypatch.setenv("SEARCHER_STORAGE", "postgresql+psycopg2://u@h/db")
    assert c.storage_url() == "postgresql+psycopg2://u@h/db"
    assert c.storage_url("sqlite:////flag.db") == "sqlite:////flag.db"


def test_shipped_study_files_are_valid():
    for path in sorted((ROOT / "studies").glob("*.toml")):
        c = load_study(path)
        assert resolved_dict(c)["study"]["name"] == c.study.name


def test_seed_study_reproduces_the_public_card():
    from searcher.search import space

    c = load_study(ROOT / "studies" / "sst2-bert-mini.toml")
    first = space.check_enqueued(c)[0]
    plan = space.plan_from_values(c, {**{k: v.value for k, v in space.dimensions(c).items()
                                         if isinstance(v, Fixed)}, **first})
    assert plan.hyperparams.learning_rate == 0.00021185586235152412
    assert plan.hyperparams.batch_size == 1024
    assert plan.hyperparams.epochs == 8
    assert plan.hyperparams.seed == 33
    assert plan.student.checkpoint == "google/bert_uncased_L-4_H-256_A-4"
    assert c.teacher.model == "textattack/bert-base-uncased-SST-2"
    assert c.train.amp == "auto"


def test_sampler_pruner_and_stop_parse_and_may_change_between_runs(tmp_path):
    from searcher.config import SamplerConfig, StopConfig, defining

    c = load_study(write(tmp_path, BASE.replace('name = "x"', 'name = "x"\nsampler = "gp"')))
    assert c.study.sampler == SamplerConfig(type="gp") and c.study.sampler.options == {}
    assert c.study.stop is None
    changed = load_study(write(tmp_path, BASE.replace('name = "x"', '''name = "x"
sampler = { type = "tpe", n_startup_trials = 10, constant_liar = false }
pruner = { type = "successive_halving", reduction_factor = 2, min_early_stopping_rate = 1 }
stop = { patience = 8, min_delta = 0.002, terminator = true, min_trials = 12 }''')))
    assert changed.study.sampler.options == {"n_startup_trials": 10, "constant_liar": False}
    assert changed.study.pruner.type == "successive_halving" and changed.study.pruner.min_early_stopping_rate == 1
    assert changed.study.stop == StopConfig(patience=8, min_delta=0.002, terminator=True, min_trials=12)
    assert defining(c) == defining(changed)  # what defines the trials is the same: a study may switch between runs
    multi = load_study(write(tmp_path, BASE.replace('name = "x"', 'name = "x"\ndirections = ["maximize", '
                                                                  '"minimize"]\nsampler = "nsga2"')))
    assert multi.study.sampler.type == "nsga2" and multi.study.pruner.type == "none"


def test_allow_baseline_does_not_define_the_study(tmp_path):
    """[teacher.fine_tune] allow_baseline says whether to go on with a teacher that learned nothing, not how it is
    made: a study created without the key (or before it existed) is the same study with it."""
    from searcher.config.identity import changed_settings, defining

    text = BASE.replace('model = "some/teacher"', 'base = "some/base"')
    plain = load_study(write(tmp_path, text))
    allowed = load_study(write(tmp_path, text + "[teacher.fine_tune]\nallow_baseline = true\n"))
    assert allowed.teacher.fine_tune.allow_baseline and not plain.teacher.fine_tune.allow_baseline
    assert changed_settings(defining(plain), defining(allowed)) == []
    assert "allow_baseline" not in defining(allowed)["[teacher] fine_tune"]
