"""searcher.card.folders: a card folder (what `searcher push` uploads) holds only what searcher wrote, never what someone
left in the trial's checkpoint folder, and never what a symbolic link there points at."""

import json
import shutil
from pathlib import Path

import optuna
import pytest

from searcher.records import checkpoints
from searcher.config import load_study

SAVED = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}  # at least these


@pytest.fixture(scope="module")
def study_path(world, tmp_path_factory) -> Path:
    """One finished one-trial study of its own: these tests change its checkpoint folder (and put it back)."""
    from searcher.cli import main

    path = world.study(tmp_path_factory.mktemp("folders"), name="pub", study={"n_trials": 1},
                       hub={"repo_id": "acme/pub-t{trial}"}, train={"latency": False})
    assert main(["-q", "optimize", str(path)]) == 0
    return path


def checkpoint(path: Path) -> Path:
    config = load_study(path)
    (trial,) = optuna.load_study(study_name="pub", storage=config.storage_url()).trials
    return Path(trial.user_attrs["model_dir"])


def test_the_checkpoint_lists_the_files_it_saved(study_path):
    folder = checkpoint(study_path)
    run = json.loads((folder / checkpoints.RUN_RECORD).read_text())
    assert SAVED <= set(run["files"]) and checkpoints.RUN_RECORD not in run["files"]
    assert set(run["files"]) == {f.name for f in folder.iterdir() if f.is_file()} - {checkpoints.RUN_RECORD}


def test_a_file_left_in_the_checkpoint_is_not_carded_listed_or_pushed(study_path, cli, hub, tmp_path):
    folder = checkpoint(study_path)
    left = [folder / ".env", folder / "onnx" / "model.onnx"]  # a secret, and ONNX files export never wrote
    (folder / "onnx").mkdir()
    left[0].write_text("HF_TOKEN=hf_do_not_publish_me\n")
    left[1].write_bytes(b"not an export of this trial")
    try:
        code, out, err = cli("card", study_path, "--best", "--out", tmp_path / "cards")
        assert code == 0, err
        carded = Path(out.split()[0])
        assert not (carded / ".env").exists() and not (carded / "onnx").exists()
        assert SAVED <= {f.name for f in carded.iterdir()}
        assert ".env" not in json.loads((carded / "searcher_trial.json").read_text())["files"]

        code, out, err = cli("push", study_path, "--dry-run")
        assert code == 0, err
        assert "model.safetensors" in out and ".env" not in out and "onnx" not in out

        code, out, err = cli("push", study_path)
        assert code == 0, err
        (repo,) = hub.repos.values()
        assert SAVED <= set(repo.head.files)
        assert not any(name.endswith(".env") or name.startswith("onnx/") for name in repo.head.files)
        assert not any(b"hf_do_not_publish_me" in content for content in repo.head.files.values())
    finally:
        left[0].unlink()
        shutil.rmtree(folder / "onnx")


def test_a_symlinked_trial_folder_is_refused_in_one_line(study_path, cli, tmp_path):
    folder = checkpoint(study_path)
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    (elsewhere / "extra.txt").write_text("not the student")
    folder.symlink_to(elsewhere, target_is_directory=True)
    try:
        for command in (("card", study_path, "--best", "--out", tmp_path / "cards"), ("push", study_path, "--dry-run")):
            code, out, err = cli(*command)
            assert code == 2 and out == ""
            assert err.count("\n") == 1 and f"{folder} is a symbolic link" in err, err
        assert not (tmp_path / "cards").exists() or not any((tmp_path / "cards").iterdir())
    finally:
        folder.unlink()
        (elsewhere / "extra.txt").unlink()
        elsewhere.rename(folder)


def test_a_symlinked_file_in_the_checkpoint_is_refused_not_followed(study_path, cli, tmp_path):
    folder = checkpoint(study_path)
    target = folder / "tokenizer_config.json"
    kept = tmp_path / "tokenizer_config.json"
    shutil.move(target, kept)
    target.symlink_to(kept)
    try:
        code, out, err = cli("card", study_path, "--best", "--out", tmp_path / "cards")
        assert code == 2 and out == "" and f"{target} is a symbolic link" in err and err.count("\n") == 1
    finally:
        target.unlink()
        shutil.move(kept, target)
