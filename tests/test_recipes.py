"""Importing published recipes: cards (Trainer, SetFit, searcher's own, edited, flattened), searcher_trial.json,
finished Optuna studies and Hub ids -> [[enqueue]] blocks. Offline: the Hub is the local test server."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import optuna
import pytest

from conftest import requirement
from searcher import hyperparams, recipes
from searcher.config import load_study
from searcher.errors import StudyError
from searcher.recipes import Recipe, RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CARDS = Path(__file__).resolve().parent / "cards"
GOLDEN = Path(__file__).resolve().parent / "golden"
PUBLIC_CARD = ROOT.parent / "shared" / "examples" / "cards" / "bert-mini-sst2-distilled.README.md"
PUBLIC_LR = 0.00021185586235152412


@pytest.fixture
def public_card() -> Path:
    if not PUBLIC_CARD.is_file():  # a skip on a fresh clone, a failure in CI (SEARCHER_TEST_REQUIRE names data)
        requirement("data", f"the public card is not at {PUBLIC_CARD} (CI has ../shared/examples; a fresh clone "
                            f"does not)")
    return PUBLIC_CARD


def one(source) -> Recipe:
    (recipe,) = recipes.read(str(source))
    return recipe


def result(recipe: Recipe, metric: str, split: str | None = None):
    found = [p for p in recipe.published if p.metric_type == metric and (split is None or p.dataset_split == split)]
    assert found, f"no published {metric} ({split}) in {recipe.published}"
    return found[0]


def flattened(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / f"flat-{path.name}"
    out.write_text(" ".join(path.read_text().splitlines()))
    assert "\n" not in out.read_text()
    return out


def entries(text: str) -> list[dict]:
    return tomllib.loads(text).get("enqueue", [])


def blocks(text: str) -> list[dict]:
    """The parameters of each [[enqueue]] entry, without its _source/_published marks."""
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries(text)]


STUDY = """\
# a study written by hand: load_study only checks the file, so the data and teacher need not exist
[study]
name = "import-test"   # the name
seed = 1

[data]
train = "data/train.csv"
validation = "data/validation.csv"
text_columns = ["text"]

[teacher]
model = "teacher"

[student]
layers = [2, 4]
hidden = [128, 256]
init = "pretrained"

[search]
learning_rate = [1e-5, 1e-3]
batch_size = [16, 32, 64, 128]
temperature = [1.0, 8.0]
alpha = [0.0, 1.0]
epochs = 3
"""


@pytest.fixture
def study_file(tmp_path) -> Path:
    path = tmp_path / "import-test.toml"
    path.write_text(STUDY)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Trainer cards


def test_the_public_trainer_card(public_card):
    r = one(public_card)
    assert r.values["learning_rate"] == PUBLIC_LR and repr(r.values["learning_rate"]) == "0.00021185586235152412"
    assert r.values["batch_size"] == 1024 and isinstance(r.values["batch_size"], int)
    assert r.values["epochs"] == 8 and isinstance(r.values["epochs"], int)
    assert (r.values["layers"], r.values["hidden"], r.values["init"]) == (4, 256, "pretrained")
    assert "google/bert_uncased_L-4_H-256_A-4" in r.provenance["layers"]
    assert "train_batch_size: 1024" in r.provenance["batch_size"]
    assert any(n.startswith("set [study] seed = 33") for n in r.notes)
    assert "seed" not in r.values  # the study seed is not an enqueue parameter
    assert "optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08" in r.unmapped
    assert "lr_scheduler_type: linear" in r.unmapped
    assert "mixed_precision_training: Native AMP" in r.unmapped
    assert not {"temperature", "alpha"} & set(r.values)  # the card does not state them: nothing is made up
    acc = result(r, "accuracy")
    assert acc.value == 0.856651376146789  # model-index, exact (the text says 0.8567)
    assert (acc.dataset_type, acc.dataset_config, acc.dataset_split) == ("glue", "sst2", "validation")
    assert result(r, "loss").value == 1.1792  # only in the results sentence
    assert r.source == str(public_card) and r.link is None


def test_a_flattened_card_gives_the_same_values(public_card, tmp_path):
    flat = one(flattened(public_card, tmp_path))
    assert flat.values == one(public_card).values
    assert flat.values["learning_rate"] == PUBLIC_LR
    assert any(n.startswith("set [study] seed = 33") for n in flat.notes)
    assert "mixed_precision_training: Native AMP" in flat.unmapped
    # without line breaks the YAML front matter is gone; the results sentence still gives the published accuracy
    assert result(flat, "accuracy").value == 0.8567 and result(flat, "accuracy").dataset_name == "glue"


@pytest.mark.parametrize("card", [CARDS / "setfit.README.md", GOLDEN / "single_objective.README.md"])
def test_flattened_setfit_and_searcher_cards(card, tmp_path):
    flat = one(flattened(card, tmp_path))
    if card.parent != GOLDEN:
        assert flat.values == one(card).values
        return
    # a searcher card's recipe is data in its front matter: every value the trial trained with, exact; flattened
    # onto one line the YAML is lost, and the prose still gives the searched values (alpha and T from the
    # Distillation section, without the ```toml block)
    full = one(card)
    assert {k: full.values[k] for k in flat.values} == flat.values
    assert {"max_grad_norm", "weight_decay", "layers", "hidden", "init"} <= set(full.values)
    assert "front matter" in full.provenance["alpha"] and "at most 4 decimals" in flat.provenance["alpha"]


def test_a_card_whose_model_index_is_broken_still_gives_its_recipe(tmp_path):
    card = tmp_path / "README.md"
    card.write_text((CARDS / "trainer-accumulation.README.md").read_text().replace("      type: imdb\n", ""))
    r = one(card)
    assert r.values == one(CARDS / "trainer-accumulation.README.md").values
    assert any("model-index was not used" in n for n in r.notes)
    assert result(r, "accuracy").value == 0.9315  # from the results sentence instead


def test_trainer_card_with_gradient_accumulation():
    r = one(CARDS / "trainer-accumulation.README.md")
    assert r.values["batch_size"] == 128  # total_train_batch_size = 32 x 4
    assert "total_train_batch_size: 128" in r.provenance["batch_size"]
    assert "gradient_accumulation_steps: 4" in r.provenance["batch_size"]
    assert r.values["learning_rate"] == 3e-05
    assert r.values["epochs"] == 3 and isinstance(r.values["epochs"], int)  # "3.0"
    assert r.values["warmup_ratio"] == 0.1  # transformers 5: warmup_steps below 1 is a ratio
    assert "lr_scheduler_warmup_steps: 0.1" in r.provenance["warmup_ratio"]
    assert any("distilbert/distilbert-base-uncased" in n and "[student] checkpoints" in n for n in r.notes)
    assert not {"layers", "hidden", "init"} & set(r.values)
    assert r.base_model == "distilbert/distilbert-base-uncased"
    acc = result(r, "accuracy")
    assert (acc.value, acc.dataset_split, acc.dataset_config) == (0.93152, "test", "plain_text")
    assert result(r, "loss").dataset_split == "test"  # the results sentence is about the same evaluation set


def test_accumulation_without_a_total_multiplies(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("### Training hyperparameters\n\nThe following hyperparameters were used during training:\n"
                    "- learning_rate: 5e-05\n- train_batch_size: 16\n- gradient_accumulation_steps: 8\n"
                    "- num_epochs: 2.5\n")
    r = one(card)
    assert r.values["batch_size"] == 128
    assert "train_batch_size: 16 x gradient_accumulation_steps: 8" in r.provenance["batch_size"]
    assert "epochs" not in r.values and "num_epochs: 2.5" in r.unmapped  # searcher trains whole epochs


def test_a_flattened_accumulation_card(tmp_path):
    path = CARDS / "trainer-accumulation.README.md"
    assert one(flattened(path, tmp_path)).values == one(path).values


def test_a_partially_edited_card():
    r = one(CARDS / "trainer-edited.README.md")
    assert r.values["learning_rate"] == PUBLIC_LR  # bold name, trailing "(best of the sweep)"
    assert r.values["batch_size"] == 1024  # `train_batch_size`: 1024 sentences
    assert r.values["epochs"] == 8  # **num_epochs**: 8 (no early stopping), moved to the top
    assert any(n.startswith("set [study] seed = 33") for n in r.notes)
    assert r.values["temperature"] == 4.0 and "distillation temperature of 4.0" in r.provenance["temperature"]
    assert r.values["alpha"] == 0.5
    assert any("1 - alpha" in n for n in r.notes)  # the convention is said, not assumed silently
    assert "mixed_precision_training: Native AMP (fp16 on one V100)" in r.unmapped  # verbatim
    assert not any(u.startswith("eval_batch_size") for u in r.unmapped)  # the removed bullet
    assert not any("Training took" in u or "sweep first" in u for u in r.unmapped)  # prose is not an item
    assert result(r, "accuracy").value == 0.856651376146789


def test_a_range_or_pair_in_a_value_is_not_read_as_its_first_number(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("## Training hyperparameters\n- learning_rate: 1e-5 to 5e-5\n- num_epochs: 3\n"
                    "- weight_decay: 0.01\n- max_grad_norm: 0.5\n- hidden_dropout_prob: 0.2\n")
    r = one(card)
    assert "learning_rate" not in r.values and "learning_rate: 1e-5 to 5e-5" in r.unmapped
    assert r.values == {"epochs": 3, "weight_decay": 0.01, "max_grad_norm": 0.5, "hidden_dropout": 0.2}


# ---------------------------------------------------------------------------------------------------------------
# SetFit, training_args.bin, nothing


def test_a_setfit_card():
    r = one(CARDS / "setfit.README.md")
    assert r.values == {"batch_size": 16, "warmup_ratio": 0.1}  # (16, 16) is one value; warmup_proportion
    assert "batch_size: (16, 16)" in r.provenance["batch_size"]
    for verbatim in ("num_epochs: (1, 16)", "body_learning_rate: (2e-05, 1e-05)", "head_learning_rate: 0.01",
                     "l2_weight: 0.01", "loss: CosineSimilarityLoss"):
        assert verbatim in r.unmapped
    assert any("pairs with two different values are not imported" in n for n in r.notes)
    assert any(n.startswith("set [study] seed = 42") for n in r.notes)
    assert any("sentence-transformers/paraphrase-mpnet-base-v2" in n and "[student] checkpoints" in n
               for n in r.notes)
    acc = result(r, "accuracy")
    assert (acc.value, acc.dataset_type, acc.dataset_split) == (0.8813838550247117, "SetFit/sst2", "test")


class _Touch:
    """Unpickling this creates a file: the importer must never unpickle training_args.bin."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("with_card", [True, False])
def test_training_args_bin_only(tmp_path, with_card):
    folder = tmp_path / "model"
    folder.mkdir()
    sentinel = tmp_path / "unpickled"
    (folder / "training_args.bin").write_bytes(pickle.dumps(_Touch(sentinel)))
    if with_card:
        (folder / "README.md").write_text((CARDS / "nothing.README.md").read_text())
    with pytest.raises(RecipeError) as e:
        recipes.read(str(folder))
    message = str(e.value)
    assert "hyperparameters are only in training_args.bin" in message
    assert "searcher does not unpickle it: nothing to import" in message
    assert "\n" not in message
    assert not sentinel.exists()
    if with_card:  # the card file itself, next to training_args.bin, says the same
        with pytest.raises(RecipeError, match="only in training_args.bin"):
            recipes.read(str(folder / "README.md"))


def test_a_card_with_nothing_names_what_was_looked_for():
    source = CARDS / "nothing.README.md"
    with pytest.raises(RecipeError) as e:
        recipes.read(str(source))
    message = str(e.value)
    assert message.startswith(f"no hyperparameters in {source}: looked for")
    for what in ("hyperparameters were used during training", "SetFit 'Training Hyperparameters'",
                 "[[enqueue]] block", "searcher_trial.json"):
        assert what in message
    assert "\n" not in message


def test_missing_paths_and_bad_sources(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        recipes.read(str(tmp_path / "nope" / "README.md"))
    with pytest.raises(RecipeError, match="not a card file"):
        recipes.read("not a source")


# ---------------------------------------------------------------------------------------------------------------
# searcher's own records


def test_round_trip_of_searchers_own_card():
    r = one(GOLDEN / "single_objective.README.md")
    params = {"alpha": 0.5, "batch_size": 1024, "learning_rate": PUBLIC_LR, "temperature": 4.0}  # its Reproduce block
    for key, value in params.items():
        assert r.values[key] == value and type(r.values[key]) is type(value), key
        assert "trial params, the card's front matter" in r.provenance[key]
    # what its study fixed (so is not in the block) comes from the front matter's record of what the trial ran with
    assert {k: r.values[k] for k in set(r.values) - set(params)} == {
        "epochs": 8, "weight_decay": 0.0, "warmup_ratio": 0.0, "max_grad_norm": 1.0, "hidden_dropout": 0.1,
        "layers": 4, "hidden": 256, "init": "pretrained"}
    assert "fixed in the source study" in r.provenance["epochs"]
    assert any(n.startswith("set [study] seed = 33") for n in r.notes)
    acc = result(r, "accuracy")
    assert (acc.value, acc.dataset_config, acc.dataset_split, acc.source) == (0.856651376146789, "sst2",
                                                                             "validation", "model-index")
    # into the study it came from, the block is exactly the card's block
    text = recipes.to_toml([r], load_study(ROOT / "studies" / "sst2-bert-mini.toml"))
    assert blocks(text) == [params]
    assert recipes.conflicts([r], load_study(ROOT / "studies" / "sst2-bert-mini.toml")) == []


def test_searchers_card_takes_its_own_block_not_the_study_files():
    # the multi-objective card shows the study file, whose own [[enqueue]] is another trial's values
    r = one(GOLDEN / "multi_objective.README.md")
    assert (r.values["batch_size"], r.values["learning_rate"]) == (256, 0.0001)


def test_searcher_trial_json():
    path = CARDS / "searcher_trial.json"
    r = one(path)
    assert r.values == {"learning_rate": 0.0007453802167302384, "batch_size": 64, "temperature": 5.123456789012345,
                        "alpha": 0.37183950103628843, "epochs": 2, "weight_decay": 0.0, "warmup_ratio": 0.0,
                        "max_grad_norm": 1.0, "layers": 3, "hidden": 128, "init": "random"}
    assert "trial params" in r.provenance["learning_rate"]
    assert "fixed in the source study" in r.provenance["epochs"]
    assert r.notes == ["set [study] seed = 42 (the source study's seed)"]
    assert r.link == "https://huggingface.co/acme/quickstart-L3-H128"
    acc = result(r, "accuracy")
    assert (acc.value, acc.dataset_split) == (0.772, "1000 rows held out of train")

    # its params go back into the quickstart study unchanged; what the study fixes anyway is left out
    text = recipes.to_toml([r], load_study(ROOT / "studies" / "quickstart.toml"))
    (block,) = blocks(text)
    assert block == json.loads(path.read_text())["params"]
    assert "# epochs = 2: the study already trains with this value" in text


def test_a_folder_prefers_searcher_trial_json(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    (folder / "README.md").write_text((GOLDEN / "single_objective.README.md").read_text())
    (folder / "searcher_trial.json").write_text((CARDS / "searcher_trial.json").read_text())
    assert one(folder).values["temperature"] == 5.123456789012345  # exact, from the json, not the card


def _trial(params: dict, value: float, **user_attrs):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def dist(v):
        if isinstance(v, str):
            return CategoricalDistribution([v])
        if isinstance(v, int):
            return IntDistribution(1, 4096)
        return FloatDistribution(1e-12, 100.0)

    return optuna.trial.create_trial(params=params, distributions={k: dist(v) for k, v in params.items()},
                                     value=value, user_attrs=user_attrs)


def test_a_finished_searcher_study_best_first(tmp_path):
    url = f"sqlite:///{tmp_path / 'done.db'}"
    study = optuna.create_study(storage=url, study_name="done", direction="maximize")
    study.set_metric_names(["accuracy"])
    study.set_user_attr("dataset", {"dataset": "glue", "subset": "sst2", "splits": {"validation": "validation"}})
    fixed = {"epochs": 3, "weight_decay": 0.0, "warmup_ratio": 0.0, "seed": 7, "max_grad_norm": 1.0}
    for lr, acc in ((1e-4, 0.80), (3.3333333333333335e-4, 0.86), (2e-3, 0.83)):
        params = {"learning_rate": lr, "batch_size": 32, "temperature": 2.0, "alpha": 0.5, "layers": 2}
        study.add_trial(_trial(params, acc, hyperparams={**params, **fixed},
                               student={"layers": 2, "hidden": 128, "init": "pretrained",
                                        "checkpoint": "google/bert_uncased_L-2_H-128_A-2"},
                               metrics={"accuracy": acc, "loss": 0.5}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    found = recipes.read(f"{url}::done")
    assert [r.values["learning_rate"] for r in found] == [3.3333333333333335e-4, 2e-3, 1e-4]
    best = found[0]
    assert best.values["epochs"] == 3 and best.values["hidden"] == 128 and best.values["init"] == "pretrained"
    assert best.notes == ["set [study] seed = 7 (the source study's seed)"]
    assert best.source == f"{url}::done trial 1 (rank 1 of 3)"
    assert best.base_model == "google/bert_uncased_L-2_H-128_A-2"
    acc = result(best, "accuracy")
    assert (acc.value, acc.dataset_type, acc.dataset_config) == (0.86, "glue", "sst2")
    assert [b["learning_rate"] for b in blocks(recipes.to_toml(found))] == [3.3333333333333335e-4, 2e-3, 1e-4]


def test_a_plain_optuna_study_minimizing(tmp_path):
    # e.g. Trainer.hyperparameter_search: params named like TrainingArguments, objective eval_loss
    url = f"sqlite:///{tmp_path / 'hp.db'}"
    study = optuna.create_study(storage=url, study_name="hp", direction="minimize")
    for lr, loss in ((5e-5, 0.31), (2e-5, 0.29)):
        study.add_trial(_trial({"learning_rate": lr, "per_device_train_batch_size": 16, "num_train_epochs": 2,
                                "seed": 11, "optim": "adamw_torch"}, loss))
    best, second = recipes.read(f"{url}::hp")
    assert best.values == {"learning_rate": 2e-5, "batch_size": 16, "epochs": 2}
    assert second.values["learning_rate"] == 5e-5
    assert "optim: adamw_torch" in best.unmapped
    assert any(n.startswith("set [study] seed = 11") for n in best.notes)
    assert best.published[0].value == 0.29


def test_study_sources_that_cannot_be_read(tmp_path):
    for missing, url in ((tmp_path / "missing.db", f"sqlite:///{tmp_path / 'missing.db'}"),
                         (tmp_path / "missing.log", f"journal:{tmp_path / 'missing.log'}")):
        with pytest.raises(StudyError, match="does not exist"):  # searcher.records.storage.open_study's
            recipes.read(f"{url}::x")
        assert not missing.exists()  # opening it would have created an empty storage
    with pytest.raises(StudyError) as e:  # nothing listens on port 1
        recipes.read("postgresql+psycopg2://user:s3cret@127.0.0.1:1/db::x")
    assert "s3cret" not in str(e.value) and "user:***@127.0.0.1" in str(e.value)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=url, study_name="empty")
    with pytest.raises(RecipeError, match="no complete trials"):
        recipes.read(f"{url}::empty")
    with pytest.raises(StudyError, match="no study named 'other'.*empty"):
        recipes.read(f"{url}::other")


# ---------------------------------------------------------------------------------------------------------------
# The Hub (local test server)


def test_a_hub_id_is_read_with_modelcard_load(hub):
    from hubserver import Commit, Repo

    text = (CARDS / "trainer-edited.README.md").read_bytes()
    hub.repos["acme/bert-mini-sst2"] = Repo("acme/bert-mini-sst2", private=False,
                                            commits=[Commit("a" * 40, "initial commit", "", {"README.md": text})])
    r = one("acme/bert-mini-sst2")
    assert r.values == one(CARDS / "trainer-edited.README.md").values
    assert one("https://huggingface.co/acme/bert-mini-sst2").values == r.values  # a pasted page URL
    assert r.source == "acme/bert-mini-sst2" and r.link == "https://huggingface.co/acme/bert-mini-sst2"
    assert result(r, "accuracy").value == 0.856651376146789
    assert any("resolve/main/README.md" in path for _, path, _ in hub.requests)


def test_hub_ids_that_give_nothing(hub):
    from hubserver import Commit, Repo

    files = {"README.md": (CARDS / "nothing.README.md").read_bytes(), "training_args.bin": b"\x80\x04N."}
    hub.repos["acme/pickled"] = Repo("acme/pickled", private=False, commits=[Commit("b" * 40, "c", "", files)])
    with pytest.raises(RecipeError, match="acme/pickled: hyperparameters are only in training_args.bin"):
        recipes.read("acme/pickled")
    with pytest.raises(RecipeError, match="cannot read the model card of acme/absent from the Hub"):
        recipes.read("acme/absent")


# ---------------------------------------------------------------------------------------------------------------
# Writing blocks


def test_to_toml_round_trips_values_exactly(public_card):
    found = [one(public_card), one(CARDS / "trainer-edited.README.md"), one(CARDS / "searcher_trial.json")]
    text = recipes.to_toml(found)
    parsed = blocks(text)
    assert parsed == [r.values for r in found]
    for got, r in zip(parsed, found):
        for key, value in r.values.items():
            assert type(got[key]) is type(value)
    assert f"# from {public_card}" in text
    assert "# batch_size from train_batch_size: 1024 (card hyperparameters)" in text
    # each block is marked with its source and what the source published, as real keys (not comments)
    marks = [{k: v for k, v in e.items() if k.startswith("_")} for e in entries(text)]
    assert marks[0] == {"_source": str(public_card), "_published": [
        {"dataset": "glue", "config": "sst2", "split": "validation",
         "metrics": {"accuracy": 0.856651376146789, "loss": 1.1792}}]}
    assert marks[2]["_source"] == "https://huggingface.co/acme/quickstart-L3-H128"  # a page, where there is one
    held_out = marks[2]["_published"][0]
    assert held_out["split"] == "1000 rows held out of train" and held_out["metrics"]["accuracy"] == 0.772
    assert "# not imported: optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08" in text
    assert "# note: set [study] seed = 33" in text


def test_to_toml_with_a_study_reports_what_it_cannot_take_and_never_clips(study_file):
    config = load_study(study_file)
    r = Recipe(values={"learning_rate": 0.05, "batch_size": 1024, "temperature": 2.5, "epochs": 8, "layers": 4,
                       "hidden": 256, "init": "pretrained", "hidden_dropout": 0.2},
               provenance={"learning_rate": "learning_rate: 0.05 (card hyperparameters)"}, source="card.md")
    text = recipes.to_toml([r], config)
    assert ("# learning_rate = 0.05 is outside [search] learning_rate [1e-05, 0.001] (log): widen it to import "
            "this value") in text
    assert "# batch_size = 1024 is not one of [search] batch_size [16, 32, 64, 128]: add it" in text
    assert "# epochs = 8 conflicts with [search] epochs = 3, which the study fixes" in text
    assert "# hidden_dropout = 0.2 conflicts with [search] hidden_dropout = 0.1, which the study fixes" in text
    assert "# init = \"pretrained\": the study already trains with this value" in text
    (block,) = blocks(text)
    assert block == {"temperature": 2.5, "layers": 4, "hidden": 256}  # no clipped 0.001, no 128
    listed = recipes.conflicts([r], config)
    assert len(listed) == 4 and all(line.startswith("card.md: ") for line in listed)
    assert any("[search] learning_rate" in line and "widen" in line for line in listed)


def test_a_checkpoint_list_study_takes_the_student_by_checkpoint(tmp_path, public_card):
    path = tmp_path / "ckpt.toml"
    path.write_text(STUDY.replace('layers = [2, 4]\nhidden = [128, 256]\ninit = "pretrained"',
                                  'checkpoints = ["google/bert_uncased_L-4_H-256_A-4", "prajjwal1/bert-tiny"]'))
    config = load_study(path)
    (block,) = blocks(recipes.to_toml([one(public_card)], config))
    assert block["checkpoint"] == "google/bert_uncased_L-4_H-256_A-4"
    assert not {"layers", "hidden", "init"} & set(block)
    setfit = one(CARDS / "setfit.README.md")
    assert any("checkpoint = \"sentence-transformers/paraphrase-mpnet-base-v2\" is not one of [student] "
               "checkpoints" in line for line in recipes.conflicts([setfit], config))


def test_an_empty_fit_writes_no_block(study_file):
    r = Recipe(values={"epochs": 3}, provenance={}, source="x")
    text = recipes.to_toml([r], load_study(study_file))
    assert blocks(text) == [] and "# nothing to enqueue from this source" in text


# ---------------------------------------------------------------------------------------------------------------
# Appending to a study file


def test_append_keeps_every_byte_and_the_result_loads(study_file, public_card):
    original = study_file.read_bytes()
    config = load_study(study_file)
    r = one(CARDS / "trainer-edited.README.md")
    text = recipes.to_toml([r], config)
    recipes.append(study_file, text)
    new = study_file.read_bytes()
    assert new.startswith(original)
    assert new[len(original):].startswith(b"\n#")  # one blank line, then the blocks
    loaded = load_study(study_file)
    assert loaded.enqueue == tuple(entries(text))
    assert loaded.enqueue[0]["learning_rate"] == PUBLIC_LR

    # a second import goes after the first
    second = recipes.to_toml([Recipe(values={"temperature": 3.0}, provenance={}, source="y")], config)
    recipes.append(study_file, second)
    assert study_file.read_bytes().startswith(new)
    assert len(load_study(study_file).enqueue) == 2


def test_append_to_a_file_without_a_final_newline(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(STUDY.rstrip("\n").encode() + b"  # last line, no newline")
    original = path.read_bytes()
    recipes.append(path, "[[enqueue]]\ntemperature = 2.0\n")
    assert path.read_bytes() == original + b"\n\n[[enqueue]]\ntemperature = 2.0\n"


def test_append_refuses_nothing(study_file):
    original = study_file.read_bytes()
    with pytest.raises(RecipeError, match="no \\[\\[enqueue\\]\\] blocks"):
        recipes.append(study_file, "\n")
    assert study_file.read_bytes() == original


@pytest.mark.parametrize("text, why", [
    ("[[enqueue]]\nlearning_rate = 0.05\n", "outside the searched range"),
    ("[[enqueue]]\nlearning_rate = \n", "not valid TOML"),
    ("[[enqueue]]\nbogus = 1\n", "unknown parameter"),
])
def test_append_leaves_the_file_unchanged_when_it_would_break(study_file, text, why):
    original = study_file.read_bytes()
    with pytest.raises(RecipeError) as e:
        recipes.append(study_file, text)
    assert "the file is unchanged" in str(e.value) and why in str(e.value)
    assert study_file.read_bytes() == original
    assert list(study_file.parent.iterdir()) == [study_file]  # no temporary file left behind


def test_append_refuses_a_read_only_file(study_file):
    original = study_file.read_bytes()
    study_file.chmod(0o444)
    try:
        with pytest.raises(RecipeError, match="read-only; make it writable"):
            recipes.append(study_file, "[[enqueue]]\ntemperature = 2.0\n")
        assert study_file.read_bytes() == original and study_file.stat().st_mode & 0o777 == 0o444
    finally:
        study_file.chmod(0o644)


def test_append_into_a_file_that_cannot_be_replaced_is_one_line(study_file, monkeypatch):
    """An immutable file (chattr +i): the rename over it fails with EPERM, also for root."""
    import errno
    import os

    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dst))

    original = study_file.read_bytes()
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(RecipeError, match="cannot write .*Operation not permitted; the file is unchanged"):
        recipes.append(study_file, "[[enqueue]]\ntemperature = 2.0\n")
    assert study_file.read_bytes() == original
    assert list(study_file.parent.iterdir()) == [study_file]


def test_append_refuses_a_file_that_is_not_utf8_and_a_folder(study_file, cli):
    study_file.write_bytes(STUDY.encode() + b"# caf\xe9 (latin-1)\n")
    original = study_file.read_bytes()
    with pytest.raises(RecipeError, match="not UTF-8 text"):
        recipes.append(study_file, "[[enqueue]]\ntemperature = 2.0\n")
    assert study_file.read_bytes() == original
    code, _, err = cli("import", str(CARDS / "trainer-edited.README.md"), "--append", str(study_file))
    assert code == 2 and "not UTF-8 text" in err and "Traceback" not in err
    with pytest.raises(RecipeError, match="is a folder"):
        recipes.append(study_file.parent, "[[enqueue]]\ntemperature = 2.0\n")


def test_appending_the_same_card_twice_adds_it_once(study_file):
    config = load_study(study_file)
    text = recipes.to_toml([one(CARDS / "trainer-edited.README.md")], config)
    recipes.append(study_file, text)
    once = study_file.read_bytes()
    with pytest.raises(RecipeError, match="already holds these"):
        recipes.append(study_file, text)
    assert study_file.read_bytes() == once
    assert len(load_study(study_file).enqueue) == 1


def test_a_source_outside_the_bmp_is_valid_toml(tmp_path, study_file):
    folder = tmp_path / "cards \U0001F600"
    folder.mkdir()
    card = folder / "README.md"
    card.write_text((CARDS / "trainer-edited.README.md").read_text())
    text = recipes.to_toml([one(card)], load_study(study_file))
    (entry,) = entries(text)  # tomllib would refuse JSON's surrogate pairs (\\ud83d\\ude00)
    assert entry["_source"] == str(card)
    recipes.append(study_file, text)
    assert load_study(study_file).enqueue[0]["_source"] == str(card)


def test_non_finite_values_are_reported_not_imported(tmp_path):
    record = json.loads((CARDS / "searcher_trial.json").read_text())
    record["params"]["learning_rate"] = float("nan")
    record["params"]["batch_size"] = float("inf")
    path = tmp_path / "searcher_trial.json"
    path.write_text(json.dumps(record))  # json writes NaN and Infinity
    r = one(path)
    assert "learning_rate" not in r.values and "batch_size" not in r.values
    assert "learning_rate = nan (not a finite number: not imported)" in r.unmapped
    assert "batch_size = inf (not a finite number: not imported)" in r.unmapped
    assert "nan" not in blocks(recipes.to_toml([r])) and "learning_rate" not in blocks(recipes.to_toml([r]))[0]


@pytest.mark.timeout(180)
def test_a_huge_card_is_read_in_linear_time(tmp_path):
    """50 MB of bullets: the old parser copied the rest of the lines for every bullet and did not finish in 400 s;
    a card is read up to 16 MB, in one pass."""
    head = (CARDS / "trainer-accumulation.README.md").read_text()
    filler = "".join(f"- note number {i}: value {i}\n" for i in range(60_000))  # about 1.6 MB of bullets
    card = tmp_path / "README.md"
    with open(card, "w") as f:
        f.write(head)
        for _ in range(32):
            f.write(filler)
    assert card.stat().st_size > 50e6
    r = one(card)
    assert r.values["batch_size"] == 128 and r.values["learning_rate"] == 3e-05


# ---------------------------------------------------------------------------------------------------------------
# The registry drives the importer: every hyperparameter round-trips through searcher's own card


# a value off each entry's default, with more digits than the card prints; a new registry entry needs one here
OFF_DEFAULT = {"learning_rate": 0.000123456789, "batch_size": 48, "temperature": 3.14159265, "alpha": 0.27182818,
               "epochs": 5, "weight_decay": 0.01234567, "warmup_ratio": 0.06172839, "max_grad_norm": 0.55555555,
               "hidden_dropout": 0.22222222, "augment": 2, "hidden_weight": 0.3333333, "attention_weight": 1.7777777,
               "relation_weight": 2.4444444, "cls_weight": 0.1111111}


def _card_of(name: str, value, tmp_path: Path) -> Path:
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from searcher import card
    from test_card import PUBLIC_ROWS, golden_study, trial_attrs

    study = golden_study()
    attrs = trial_attrs(1e-4, 48, 48, 4, 256, 11171074, 0.85, PUBLIC_ROWS)
    attrs["hyperparams"].update({"augment": 0, name: value})
    attrs["batch"] = {"effective": attrs["hyperparams"]["batch_size"], "micro": attrs["hyperparams"]["batch_size"],
                      "accumulation": 1, "eval": attrs["hyperparams"]["batch_size"]}
    h = hyperparams.BY_NAME[name]
    dist = IntDistribution(1, 1024) if h.value_type is int else FloatDistribution(0.0, 100.0)
    study.add_trial(create_trial(state=TrialState.COMPLETE, params={name: value}, distributions={name: dist},
                                 user_attrs=attrs, values=[0.85]))
    text = card.render(card.context(study, study.trials[-1]))
    path = tmp_path / "README.md"
    path.write_text(text)
    return path


@pytest.mark.parametrize("h", hyperparams.REGISTRY, ids=lambda h: h.name)
def test_every_registry_entry_round_trips_through_our_card(h, tmp_path):
    assert set(OFF_DEFAULT) == set(hyperparams.NAMES), "give the new registry entry an OFF_DEFAULT value"
    value = OFF_DEFAULT[h.name]
    path = _card_of(h.name, value, tmp_path)
    # the front matter holds it exactly, under its own name
    r = one(path)
    assert r.values[h.name] == value and type(r.values[h.name]) is type(value)
    assert not [u for u in r.unmapped if u.startswith(h.name)]
    if h.card is None and h.imported_as == "value":
        return  # not in the card's lists (a loss weight is on its loss's line): the front matter has it
    # without the front matter's data and the ```toml blocks, the card's lists still give it (as printed)
    prose = tmp_path / "prose.md"
    prose.write_text(_without_data(path.read_text()))
    p = one(prose)
    assert p.values[h.name] == pytest.approx(value, abs=5e-5), (h.name, p.unmapped)  # 4 decimals, as printed
    assert not [u for u in p.unmapped if u.split(":")[0].split(" =")[0] in (h.name, h.card)]


def _without_data(text: str) -> str:
    """The card with its front matter's `searcher` table and its ```toml blocks cut out."""
    import re

    text = re.sub(r"^searcher:\n(?:  .*\n)+", "", text, flags=re.MULTILINE)
    assert "searcher:" not in text.split("---", 2)[1]
    return re.sub(r"```toml\n.*?```", "", text, flags=re.DOTALL)
