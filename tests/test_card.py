"""Model cards: golden files are the spec; metadata round-trips; exported folders load and predict the same.

The golden studies are built from fixed records (the public bert-mini-sst2-distilled card's numbers for the seed
configuration), so the cards are byte-for-byte reproducible. Set UPDATE_GOLDEN=1 to rewrite them after a reviewed
change to the template.
"""

import json
import os
from pathlib import Path

import numpy as np
import optuna
import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from searcher import card, records
from searcher.records import storage
from conftest import copy_study, requirement
from searcher.config import load_study, resolved_dict
from searcher.errors import ConfigError, StudyError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
SEED_STUDY = ROOT / "studies" / "sst2-bert-mini.toml"

# the public card's training results (../shared/examples/cards/bert-mini-sst2-distilled.README.md)
PUBLIC_ROWS = [(2.1552, 1.0, 66, 1.4847, 0.8349), (0.8451, 2.0, 132, 1.3495, 0.8624), (0.5864, 3.0, 198, 1.2257, 0.8532),
               (0.4553, 4.0, 264, 1.2571, 0.8544), (0.3708, 5.0, 330, 1.2132, 0.8658), (0.3086, 6.0, 396, 1.2370, 0.8589),
               (0.2701, 7.0, 462, 1.1900, 0.8635), (0.246, 8.0, 528, 1.1792, 0.856651376146789)]
DISTRIBUTIONS = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
                 "batch_size": CategoricalDistribution([16, 32, 64, 128, 256, 512, 1024]),
                 "temperature": FloatDistribution(1.0, 20.0), "alpha": FloatDistribution(0.0, 1.0)}


HISTORY = ("epoch", "step", "train_loss", "eval_loss", "cross_entropy", "accuracy", "f1", "precision", "recall",
           "seconds")


def history(rows, shift=0.0):
    cols = {c: [] for c in HISTORY}
    for tl, ep, step, vl, acc in rows:
        for c, v in zip(("train_loss", "epoch", "step", "eval_loss", "cross_entropy", "accuracy", "f1", "precision",
                         "recall", "seconds"), (tl, int(ep), step, vl, round(vl / 3.1, 4), acc - shift, acc - 0.001,
                                                acc + 0.002, acc - 0.002, 41.5)):
            cols[c].append(v)
    return cols


def trial_attrs(lr, batch, micro, layers, hidden, params, acc, rows, amp="bf16", latency=1.9):
    return {
        "hyperparams": {"learning_rate": lr, "batch_size": batch, "temperature": 4.0, "alpha": 0.5, "epochs": 8,
                        "weight_decay": 0.0, "warmup_ratio": 0.0, "seed": 33, "max_grad_norm": 1.0,
                        "hidden_dropout": 0.1},
        "student": {"layers": layers, "hidden": hidden, "heads": hidden // 64, "params": params, "init": "pretrained",
                    "checkpoint": f"google/bert_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}",
                    "model_type": "bert"},
        "batch": {"effective": batch, "micro": micro, "accumulation": batch // micro, "eval": micro},
        "runtime": {"device": "cuda", "amp": amp},
        "metrics": {"loss": rows[-1][3], "cross_entropy": round(rows[-1][3] / 3.1, 4), "accuracy": acc,
                    "f1": acc - 0.001, "precision": acc + 0.002, "recall": acc - 0.002},
        "history": history(rows),
        "wall_time_s": 333.3,
        "latency_ms": {"single_median": latency, "single_p90": latency + 0.2, "batched_median": 10 * latency,
                       "batched_p90": 11 * latency, "batch": 32, "throughput_per_s": round(3200 / latency, 1),
                       "threads": 2},
        "size_mb": round(params * 4 / 1e6, 2),
    }


def golden_study(multi: bool = False) -> optuna.Study:
    config = load_study(SEED_STUDY)
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(study_name="sst2-bert-mini", directions=directions)
    study.set_metric_names(["accuracy", "latency_ms"] if multi else ["accuracy"])
    cfg = resolved_dict(config)
    if multi:
        cfg["study"]["directions"], cfg["study"]["objectives"] = directions, ["accuracy", "latency_ms"]
        cfg["study"]["pruner"] = {"type": "none", "n_startup_trials": 5, "n_warmup_steps": 0, "reduction_factor": 3}
    cfg["path"] = "/home/user/project/studies/sst2-bert-mini.toml"
    study.set_user_attr(storage.ATTR_CONFIG, cfg)
    study.set_user_attr(storage.ATTR_STUDY_FILE, SEED_STUDY.read_text())
    study.set_user_attr(storage.ATTR_TEACHER, {
        "model": "textattack/bert-base-uncased-SST-2", "base": None, "fine_tuned_by_searcher": False,
        "path": "/home/user/.cache/huggingface/x", "layers": 12, "hidden": 768, "heads": 12, "params": 109483778,
        "size_mb": 438.0, "metrics": {"validation": {"cross_entropy": 0.2531, "accuracy": 0.9243119266055045,
                                                     "f1": 0.9242, "precision": 0.9246, "recall": 0.9241}},
        "latency_ms": {"single_median": 24.0, "single_p90": 26.5, "batched_median": 410.0, "batched_p90": 430.0,
                       "batch": 32, "throughput_per_s": 78.0, "threads": 2}})
    study.set_user_attr(storage.ATTR_DATASET, {
        "dataset": "glue", "subset": "sst2", "revision": None,
        "splits": {"train": "train", "validation": "validation"}, "text_columns": ["sentence"],
        "label_column": "label", "label_names": ["negative", "positive"],
        "sizes": {"train": 67349, "validation": 872}, "fingerprint": "0123456789abcdef0123"})
    study.set_user_attr(storage.ATTR_VERSIONS, {"searcher": "0.1.0", "transformers": "5.23.0", "torch": "2.13.0",
                                                "datasets": "5.2.0", "tokenizers": "0.23.3", "optuna": "5.0.0",
                                                "huggingface-hub": "2.4.0", "python": "3.11.7"})
    study.set_user_attr(storage.ATTR_RANGES, {"learning_rate": "[1e-05, 0.001] (log)",
                                              "batch_size": "[16, 32, 64, 128, 256, 512, 1024]",
                                              "temperature": "[1.0, 20.0]", "alpha": "[0.0, 1.0]", "epochs": "8",
                                              "layers": "4", "hidden": "256"})
    seed_params = {"learning_rate": 0.00021185586235152412, "batch_size": 1024, "temperature": 4.0, "alpha": 0.5}
    seed = trial_attrs(0.00021185586235152412, 1024, 1024, 4, 256, 11171074, 0.856651376146789, PUBLIC_ROWS)
    other_rows = [(r[0] + 0.1, r[1], r[2] * 4, r[3] + 0.05, r[4] - 0.03) for r in PUBLIC_ROWS]
    other = trial_attrs(0.0001, 256, 64, 4, 256, 11171074, 0.8266513761467889, other_rows, amp="off", latency=1.7)
    pruned = trial_attrs(1e-5, 16, 16, 4, 256, 11171074, 0.5, PUBLIC_ROWS[:1])
    pruned["prune_reason"] = "median pruner at epoch 1: accuracy 0.5000 was not good enough against earlier trials"

    def add(params, attrs, values, state=TrialState.COMPLETE):
        acc = [attrs["history"]["accuracy"][i] for i in range(len(attrs["history"]["epoch"]))]
        study.add_trial(create_trial(
            state=state, params=params, distributions=DISTRIBUTIONS, user_attrs=attrs,
            values=values if state == TrialState.COMPLETE else None,
            intermediate_values={i + 1: a for i, a in enumerate(acc)}))

    def vals(attrs):
        return [attrs["metrics"]["accuracy"], attrs["latency_ms"]["single_median"]] if multi \
            else [attrs["metrics"]["accuracy"]]

    if not multi:  # the single-objective golden shows a student exported to ONNX; the multi-objective one does not
        seed["formats"] = {
            "pytorch": {"accuracy": 0.856651376146789, "f1": 0.8557, "size_mb": 44.7, "single_median": 1.9,
                        "single_p90": 2.1, "batched_median": 19.0, "batched_p90": 20.2, "batch": 32,
                        "throughput_per_s": 1684.2, "threads": 2},
            "onnx": {"accuracy": 0.856651376146789, "f1": 0.8557, "size_mb": 44.8, "single_median": 0.9,
                     "single_p90": 1.0, "batched_median": 8.1, "batched_p90": 8.6, "batch": 32,
                     "throughput_per_s": 3950.6, "threads": 2,
                     "parity": {"rows": 872, "predictions_equal": True, "max_abs_logit_diff": 3.1e-06, "ok": True}},
            "onnx-int8": {"accuracy": 0.8543577981651376, "f1": 0.8531, "size_mb": 11.4, "single_median": 0.5,
                          "single_p90": 0.6, "batched_median": 4.4, "batched_p90": 4.9, "batch": 32,
                          "throughput_per_s": 7272.7, "threads": 2},
            "files": {"onnx": "onnx/model.onnx", "onnx-int8": "onnx/model_quantized.onnx"},
            "tokenizer_json": True}
    add(seed_params, seed, vals(seed))
    add({**seed_params, "learning_rate": 0.0001, "batch_size": 256}, other, vals(other))
    add({**seed_params, "learning_rate": 1e-5, "batch_size": 16}, pruned, None, TrialState.PRUNED)
    return study


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden card; review and rerun with UPDATE_GOLDEN=1"


def render(study, number, repo_id="acme/sst2-bert-mini-L4-H256"):
    ctx = card.context(study, study.trials[number], repo_id=repo_id)
    text = card.render(ctx)
    card.validate(text)
    return text


def test_single_objective_card_is_golden():
    check_golden("single_objective.README.md", render(golden_study(), 0))


def test_multi_objective_card_is_golden():
    check_golden("multi_objective.README.md", render(golden_study(multi=True), 1, repo_id=None))


def test_seed_configuration_prints_exactly_as_the_public_card():
    text = render(golden_study(), 0)
    public = (ROOT.parent / "shared" / "examples" / "cards" / "bert-mini-sst2-distilled.README.md")
    if not public.is_file():  # without it this test would compare our card with nothing
        requirement("data", f"the public card is not at {public} (CI has ../shared/examples; a fresh clone does not)")
    for line in ["- learning_rate: 0.00021185586235152412", "- train_batch_size: 1024", "- eval_batch_size: 1024",
                 "- seed: 33", "- lr_scheduler_type: linear", "- num_epochs: 8",
                 "- mixed_precision_training: Native AMP"]:
        assert line in text.splitlines()
        assert line in public.read_text().splitlines()
    # the public card's Trainer called its AdamW "Adam"; ours names the optimizer that ran
    assert "- optimizer: AdamW with betas=(0.9,0.999) and epsilon=1e-08" in text.splitlines()
    assert "gradient_accumulation_steps" not in text  # only printed when accumulating
    table = [line for line in text.splitlines() if line.startswith("| 0.246 ")]
    # the public card's row, with our cross-entropy column after its validation loss
    assert table and table[0].startswith("| 0.246         | 8.0   | 528  | 1.1792          | 0.3804        | 0.8567   |")


def test_accumulation_is_printed_in_the_trainer_style():
    text = render(golden_study(), 1)
    assert "- train_batch_size: 64\n- eval_batch_size: 64\n- seed: 33\n- gradient_accumulation_steps: 4\n" \
           "- total_train_batch_size: 256\n" in text
    assert "mixed_precision_training" not in text  # trained in fp32


def test_model_index_round_trips_to_the_stored_metrics(tmp_path):
    study = golden_study()
    path = tmp_path / "README.md"
    path.write_text(render(study, 0))
    loaded = ModelCard.load(path)
    assert loaded.data.pipeline_tag == "text-classification"
    assert {"generated_from_searcher", "knowledge-distillation"} <= set(loaded.data.tags)
    assert loaded.data.base_model == "google/bert_uncased_L-4_H-256_A-4"
    assert loaded.data.datasets == ["glue"]
    name, results = model_index_to_eval_results(metadata_load(path)["model-index"])
    assert name == "sst2-bert-mini-L4-H256"
    stored = study.trials[0].user_attrs["metrics"]
    assert {r.metric_type: r.metric_value for r in results} == stored
    assert all(r.dataset_type == "glue" and r.dataset_config == "sst2" and r.dataset_split == "validation"
               for r in results)


def test_results_table_has_one_row_per_epoch_matching_the_records():
    study = golden_study()
    text = render(study, 0)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2:3].isdigit()
            and line.count("|") == 10]
    stored = records.history_rows(study.trials[0].user_attrs["history"])
    assert len(rows) == len(stored) == 8
    for line, row in zip(rows, stored):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[0]) == pytest.approx(row["train_loss"], abs=5e-5)
        assert float(cells[1]) == row["epoch"] and int(cells[2]) == row["step"]
        assert float(cells[3]) == pytest.approx(row["eval_loss"], abs=5e-5)
        assert float(cells[4]) == pytest.approx(row["cross_entropy"], abs=5e-5)
        assert float(cells[5]) == pytest.approx(row["accuracy"], abs=5e-5)


def test_losses_are_labelled_for_what_they_are():
    """The student's distillation loss and its cross-entropy are two numbers with two names; the teacher's loss is
    its cross-entropy, so the two cross-entropies can be compared."""
    text = render(golden_study(), 0)
    assert "- Distillation loss: 1.1792\n- Cross-entropy: 0.3804\n- Accuracy: 0.8567" in text
    assert "on the evaluation set: Cross-entropy 0.2531, Accuracy 0.9243" in text
    assert "| Validation Loss | Validation CE |" in text and "comparable with the teacher's" in text


def test_cards_of_older_records_still_render():
    """Trials stored before the cross-entropy and the recipe were recorded: the card leaves out what is unknown."""
    study = golden_study()
    old = study.trials[0]
    attrs = {k: v for k, v in old.user_attrs.items()}
    attrs["metrics"] = {k: v for k, v in attrs["metrics"].items() if k != "cross_entropy"}
    attrs["history"] = {k: v for k, v in attrs["history"].items() if k != "cross_entropy"}
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=old.params, distributions=old.distributions,
                                 user_attrs=attrs, values=old.values))
    text = render(study, len(study.trials) - 1)
    assert "Cross-entropy" not in text.split("## Distillation")[0] and "Validation CE" not in text
    assert "- optimizer: AdamW with betas=(0.9,0.999) and epsilon=1e-08" in text


def test_no_filler_and_no_empty_links():
    for study, n in ((golden_study(), 0), (golden_study(multi=True), 1)):
        text = render(study, n, repo_id=None)
        for bad in ("None", "[]()", "More information needed", "nan", "{{", "}}"):
            assert bad not in text


def test_pruned_trial_card_is_refused():
    study = golden_study()
    with pytest.raises(StudyError, match="trial 2 is pruned .*median pruner at epoch 1.*pick one from"):
        records.select(study, trial=2)
    with pytest.raises(StudyError, match="only complete trials get a card"):
        card.context(study, study.trials[2])


def test_template_typo_fails_loudly(tmp_path):
    bad = tmp_path / "card.md.j2"
    bad.write_text((card.templates_dir() / card.TEMPLATE).read_text().replace("{{ model_name }}", "{{ model_nme }}"))
    with pytest.raises(ConfigError, match="'model_nme' is undefined"):
        card.render(card.context(golden_study(), golden_study().trials[0]), bad)


@pytest.mark.parametrize("payload", [
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for m in results %}{{ m.__class__.__init__.__globals__['__builtins__']['open']('MARKER', 'w') }}{% endfor %}",
])
def test_a_received_template_cannot_run_code(tmp_path, monkeypatch, payload):
    """[card] template may come with someone else's study file: it is rendered in Jinja's sandbox."""
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.md.j2"
    evil.write_text("---\n{{ card_data }}\n---\n" + payload + "\n")
    with pytest.raises(ConfigError, match="tried something a card template may not do"):
        card.render(card.context(golden_study(), golden_study().trials[0]), evil)
    assert not (tmp_path / "MARKER").exists()


def test_users_can_bring_their_own_template(tmp_path):
    own = tmp_path / "mine.md.j2"
    own.write_text("---\n{{ card_data }}\n---\n# {{ model_name }}: {{ results[2].name }} {{ results[2].value }}\n")
    text = card.render(card.context(golden_study(), golden_study().trials[0]), own)
    assert text.endswith("# sst2-bert-mini-trial-0: Accuracy 0.8567\n")


# ---------------------------------------------------------------------------------------------------------------
# Real folders from a real tiny study


@pytest.fixture
def tiny_study(finished_study):
    return finished_study


def test_exported_folder_loads_and_predicts_like_the_kept_checkpoint(tiny_study, cli, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    code, out, err = cli("card", tiny_study, "--best", "--out", tmp_path / "out")
    assert code == 0, err
    folder = Path(out.split()[0])
    assert {"README.md", "model.safetensors", "config.json", "searcher_trial.json", "tokenizer.json"} <= \
        {p.name for p in folder.iterdir()}
    record = json.loads((folder / "searcher_trial.json").read_text())
    study = optuna.load_study(study_name="tiny", storage=load_study(tiny_study).storage_url())
    best = study.best_trial
    assert record["trial"] == best.number and record["metrics"] == best.user_attrs["metrics"]
    assert record["repo_id"] == f"acme/tiny-L{best.user_attrs['student']['layers']}-H64-t{best.number}"
    assert "path" not in record["teacher"]

    texts = ["good film very lovely", "dull and boring plot", "the cast was awful", "superb acting"]
    preds = []
    for source in (folder, Path(best.user_attrs["model_dir"])):
        model = AutoModelForSequenceClassification.from_pretrained(source).eval()
        tok = AutoTokenizer.from_pretrained(source)
        logits = model(**tok(texts, return_tensors="pt", padding=True)).logits.detach().numpy()
        preds.append(logits.argmax(-1))
        assert model.config.id2label == {0: "neg", 1: "pos"}
    assert np.array_equal(preds[0], preds[1])
    text = (folder / "README.md").read_text()
    results = {r.metric_type: r.metric_value for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert results["accuracy"] == best.value and results["cross_entropy"] > 0
    assert "On the test split:" in text


def test_a_logits_only_study_carries_no_weights_of_losses_it_does_not_use(tiny_study, cli, tmp_path):
    from searcher import losses

    unused = {h.name for name, loss in losses.LOSSES.items() if name != "logits" for h in loss.hyperparams}
    assert unused >= {"hidden_weight", "attention_weight", "relation_weight", "cls_weight"}
    study = optuna.load_study(study_name="tiny", storage=load_study(tiny_study).storage_url())
    for trial in study.trials:
        assert not unused & set(trial.user_attrs["hyperparams"]), trial.number
    code, out, err = cli("card", tiny_study, "--best", "--out", tmp_path / "out")
    assert code == 0, err
    readme = Path(out.split()[0]) / "README.md"
    front = json.dumps(metadata_load(readme))
    assert not [name for name in unused if name in front]
    assert not [name for name in unused if name in readme.read_text()]


def test_card_of_a_removed_checkpoint_says_how_to_get_it_back(tiny_study, cli, tmp_path):
    path = copy_study(tiny_study, tmp_path / "copy")
    study = optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())
    worst = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)[0]
    # a trial like the worst whose student retention removed (keep_best): its folder is gone
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=worst.params, distributions=worst.distributions,
                                 values=worst.values,
                                 user_attrs={**worst.user_attrs, "model_dir": str(tmp_path / "models" / "gone")}))
    code, _, err = cli("card", path, "--trial", len(study.trials) - 1)
    assert code == 2 and "no longer on disk" in err and "keep_best" in err


def test_card_top_k_writes_one_folder_each(tiny_study, cli, tmp_path):
    code, out, _ = cli("card", tiny_study, "--top", "2", "--out", tmp_path)
    assert code == 0 and len(out.split()) == 2


# ---------------------------------------------------------------------------------------------------------------
# A trial whose parameters were imported (`searcher import`): the source's published result beside the student's

PUBLISHED = [{"dataset": "glue", "config": "sst2", "split": "validation",
              "metrics": {"accuracy": 0.856651376146789, "loss": 1.1792}}]
SOURCE = "https://huggingface.co/acme/bert-mini-sst2-distilled"


def imported(study, number: int, published: list, source: str = SOURCE) -> int:
    """Trial `number` again, as if its parameters came from an [[enqueue]] entry with _source and _published."""
    old = study.trials[number]
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=old.params, distributions=old.distributions,
                                 values=old.values, user_attrs={**old.user_attrs, "enqueued_from": source,
                                                                "source_published": published}))
    return len(study.trials) - 1


def test_an_imported_recipe_shows_its_published_result_beside_the_students():
    study = golden_study()
    text = render(study, imported(study, 1, PUBLISHED))
    line = ("The imported recipe's published accuracy: 0.8567 ([source](https://huggingface.co/acme/"
            "bert-mini-sst2-distilled)); this student: 0.8267.")
    assert f"- Recall: 0.8247\n\n{line}\n\n## Distillation" in text
    assert "published loss" not in text  # the source's training loss is not searcher's distillation loss
    card.validate(text)


def test_a_local_source_is_named_by_its_file_not_its_path():
    study = golden_study()
    text = render(study, imported(study, 1, PUBLISHED, source="/home/someone/cards/bert-mini.README.md"))
    assert ("The imported recipe's published accuracy: 0.8567 (source: bert-mini.README.md); this student: "
            "0.8267.") in text.splitlines()
    assert "/home/someone" not in text


@pytest.mark.parametrize("change", [{"split": "test"}, {"config": "cola"}, {"dataset": "imdb"}, {"split": None},
                                    {"dataset": None}])
def test_no_published_baseline_from_other_data_or_another_split(change):
    published = [{k: v for k, v in {**PUBLISHED[0], **change}.items() if v is not None}]
    study = golden_study()
    text = render(study, imported(study, 1, published))
    assert "published accuracy" not in text and "imported recipe" not in text


def test_latency_timed_beside_training_says_so():
    """A student finished in the background ([train] finish_in_background) was timed while the next trial trained:
    its card says so; a student timed alone (the golden cards) does not."""
    study = golden_study()
    old = study.trials[0]
    attrs = {**old.user_attrs, "latency_ms": {**old.user_attrs["latency_ms"], "beside_training": True}}
    study.add_trial(create_trial(state=TrialState.COMPLETE, params=old.params, distributions=old.distributions,
                                 user_attrs=attrs, values=old.values))
    sentence = "Timed while the search trained its next students on the accelerator"
    assert sentence in render(study, len(study.trials) - 1)
    assert sentence not in render(study, 0)
