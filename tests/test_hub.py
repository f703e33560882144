"""Publishing against a local Hub-compatible server (tests/hubserver.py) with the unmodified huggingface_hub client."""

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from conftest import TOKEN
from searcher.config import load_study


@pytest.fixture(scope="module")
def published_study(world, tmp_path_factory):
    from searcher.cli import main

    directory = tmp_path_factory.mktemp("hub")
    path = world.study(directory, study={"n_trials": 3, "keep_best": 3}, data={"test": str(world.data / "test.csv")},
                       hub={"repo_id": "acme/{study}-L{layers}-H{hidden}-trial{trial}"})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def study_of(path: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=load_study(path).storage_url())


def commits(hub, repo_id):
    return [c for c in hub.repos[repo_id].commits if c.title != "initial commit"]


def predictions(source, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    tok = AutoTokenizer.from_pretrained(source)
    return model(**tok(texts, return_tensors="pt", padding=True)).logits.detach().numpy().argmax(-1)


def test_push_best_then_load_it_back_from_the_hub(published_study, hub, cli, tmp_path):
    code, out, err = cli("push", published_study)
    assert code == 0, err
    study = study_of(published_study)
    best = study.best_trial
    repo_id = f"acme/tiny-L{best.user_attrs['student']['layers']}-H64-trial{best.number}"
    assert list(hub.repos) == [repo_id]
    assert hub.repos[repo_id].private is True  # private by default
    (commit,) = commits(hub, repo_id)
    assert f"study tiny, trial {best.number}" in commit.title
    files = commit.files
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "searcher_trial.json"} <= set(files)

    # the README on the server is the rendered card, byte for byte
    cli("card", published_study, "--trial", best.number, "--out", tmp_path / "cards")
    local = tmp_path / "cards" / f"trial-{best.number:04d}"
    assert files["README.md"] == (local / "README.md").read_bytes()
    assert f'model="{repo_id}"' in files["README.md"].decode()

    # transformers loads it through the same endpoint and predicts like the local student
    texts = ["good film very lovely", "dull and boring plot", "the cast was awful", "superb warm acting"]
    assert np.array_equal(predictions(repo_id, texts), predictions(best.user_attrs["model_dir"], texts))

    record = study.user_attrs[f"hub:trial-{best.number}"]
    assert record["repo_id"] == repo_id and record["commit"] == commit.oid and record["new_commit"] is True
    assert record["url"].endswith(repo_id) and record["private"] is True
    code, out, _ = cli("best", published_study)
    assert f"[hub: {repo_id}]" in out


def test_second_push_of_unchanged_files_makes_no_commit(published_study, hub, cli):
    assert cli("push", published_study, "--best")[0] == 0
    repo_id = next(iter(hub.repos))
    first = hub.repos[repo_id].head.oid
    code, out, _ = cli("push", published_study, "--best")
    assert code == 0 and "unchanged" in out
    assert hub.repos[repo_id].head.oid == first and len(commits(hub, repo_id)) == 1

    # a changed file (a re-rendered card from another template) makes one new commit
    config = published_study.read_text().replace('license = "apache-2.0"', "")
    published_study.with_name("other.toml").write_text(config + '\n[card]\nlicense = "mit"\n')
    study_file = published_study.with_name("other.toml")
    code, _, err = cli("push", study_file, "--best")
    assert code == 0, err
    assert len(commits(hub, repo_id)) == 2
    assert b"license: mit" in hub.repos[repo_id].head.files["README.md"]


def test_top_2_creates_two_repos_and_public_flag(published_study, hub, cli):
    code, out, err = cli("push", published_study, "--top", "2", "--public")
    assert code == 0, err
    assert len(hub.repos) == 2 and not any(r.private for r in hub.repos.values())


def test_server_errors_are_retried_into_one_commit(published_study, hub, cli):
    hub.fail("commit", times=2)
    hub.fail("create", times=1)  # huggingface_hub does not retry repo creation itself: searcher does
    code, _, err = cli("push", published_study)
    assert code == 0, err
    assert "retrying" in err
    (repo,) = hub.repos.values()
    assert len([r for r in hub.requests if r[0] == "POST" and r[1].endswith("/commit/main")]) == 3
    assert len(commits(hub, repo.repo_id)) == 1


@pytest.mark.parametrize("route", ["create", "commit"])
def test_a_server_that_keeps_failing_leaves_the_study_unchanged(published_study, hub, cli, route, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub's own backoff waits up to 23 s a request
    before = dict(study_of(published_study).user_attrs)
    hub.fail(route)
    code, _, err = cli("push", published_study, "--trial", study_of(published_study).best_trial.number)
    assert code == 1
    assert "failed 3 times" in err and "study is unchanged" in err
    assert study_of(published_study).user_attrs == before
    assert not any(commits(hub, r) for r in hub.repos)
    if route == "commit":
        assert hub.repos == {}  # the empty repo it had created is removed again


def test_token_reaches_the_server_and_nothing_else(published_study, hub, cli, capsys):
    code, out, err = cli("push", published_study)
    assert code == 0
    auth = [h.get("authorization") for _, _, h in hub.requests if h.get("authorization")]
    assert auth and all(a == f"Bearer {TOKEN}" for a in auth)
    assert TOKEN not in out + err
    study = study_of(published_study)
    assert TOKEN not in json.dumps(study.user_attrs)
    assert all(TOKEN not in json.dumps(t.user_attrs) for t in study.trials)
    out_dir = load_study(published_study).output_dir
    for f in list(out_dir.rglob("*")) + [published_study.with_suffix(".db")]:
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


def test_missing_token_fails_before_any_work(published_study, hub, cli, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = cli("push", published_study)
    assert code == 1 and "no Hugging Face token: set HF_TOKEN" in err
    assert hub.requests == []


def test_dry_run_makes_no_request(published_study, hub, cli, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    code, out, err = cli("push", published_study, "--top", "2", "--dry-run")
    assert code == 0, err
    assert hub.requests == []
    assert out.count("nothing is sent") == 2 and "(private)" in out
    for name in ("README.md", "model.safetensors", "config.json", "searcher_trial.json"):
        assert name in out
    assert "model-index:" in out and "pipeline_tag: text-classification" in out


def test_pushing_a_pruned_or_unknown_trial_is_refused(published_study, hub, cli):
    code, _, err = cli("push", published_study, "--trial", "99")
    assert code == 2 and "has no trial 99" in err and hub.requests == []


def test_push_after_optimize_when_the_study_file_asks(world, hub, cli, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 2}, hub={"repo_id": "acme/auto-{trial}", "push": "best"})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert len(hub.repos) == 1
    assert next(iter(hub.repos)).startswith("acme/auto-")
