"""The benchmarks' study files are ones searcher accepts: a refused combination fails here, not an hour into a run."""

import argparse
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

from searcher.config import ConfigError, parse_study

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def efficiency():
    before = list(sys.path)
    yield module("efficiency")
    sys.path[:] = before


@pytest.mark.parametrize("quick", [False, True])
def test_every_efficiency_configuration_is_a_valid_study(efficiency, tmp_path, quick):
    args = argparse.Namespace(quick=quick, work=tmp_path, **(efficiency.QUICK if quick else efficiency.FULL))
    for part, (sampler, pruner, _what, student) in efficiency.CONFIGS.items():
        doc = efficiency.study_doc(args, part, f"{part}-s1", 1, sampler, pruner, 3, tmp_path / "train.tsv",
                                   tmp_path / "dev.tsv", student)
        config = parse_study(doc, tmp_path / f"{part}.toml")
        assert config.study.sampler.type == (sampler["type"] if isinstance(sampler, dict) else sampler or "tpe")


def test_cmaes_runs_on_a_space_without_the_conditional_hidden_size(efficiency, tmp_path):
    """The cmaes part overrides the students; without that override its study file would be refused."""
    args = argparse.Namespace(quick=False, work=tmp_path, **efficiency.FULL)
    sampler, pruner, _what, student = efficiency.CONFIGS["cmaes"]
    assert efficiency.CONFIGS["default-h256"][3] == student  # its control searches the same space
    doc = efficiency.study_doc(args, "cmaes", "cmaes-s1", 1, sampler, pruner, 3, tmp_path / "t", tmp_path / "d")
    with pytest.raises(ConfigError, match="cmaes"):
        parse_study(doc, tmp_path / "cmaes.toml")


def test_the_quality_studies_are_valid(tmp_path):
    quality = module("quality")
    for part, runs in quality.studies(tmp_path).items():
        for name, text in runs:
            config = parse_study(tomllib.loads(text), tmp_path / f"{name}.toml")
            assert config.study.name == name


def test_the_layer_wise_and_stsb_quality_studies_are_valid(tmp_path):
    quality = module("quality")
    for text_of in (quality.sst2_layerwise_study, quality.clinc_layerwise_study):
        for name, distill in quality.LAYERWISE.items():
            config = parse_study(tomllib.loads(text_of(tmp_path, distill)), tmp_path / "layerwise.toml")
            assert config.distill.losses[0] == "logits" and bool(config.distill.layer_wise) == bool(distill)
    stsb = tmp_path / "stsb"
    stsb.mkdir()
    (stsb / "train.tsv").write_text("index\tsentence1\tsentence2\tscore\n"
                                    + "".join(f"{i}\ta \"b\tc\t{i % 5}.5\n" for i in range(1200)))
    config = parse_study(tomllib.loads(quality.stsb_study(tmp_path, tmp_path / "work")), tmp_path / "stsb.toml")
    assert config.data.task == "regression" and config.enqueue
    held_out = (tmp_path / "work" / "stsb" / "test.tsv").read_text().splitlines()
    assert len(held_out) == 1 + quality.STSB_TEST_ROWS  # the header, then the held-out pairs


def test_the_losses_benchmark_studies_are_valid(tmp_path):
    losses = module("losses")
    for name, names, cached in losses.CONFIGS:
        config = parse_study(tomllib.loads(losses.study_text(tmp_path, tmp_path, 640, names, cached)),
                             tmp_path / "cost.toml")
        assert list(config.distill.losses) == names
        assert (config.distill.cache_budget_gb >= 1) == cached


def test_the_tracker_benchmark_runs_the_quickstart_with_and_without_reporting(tmp_path):
    from searcher.config import load_study

    trackers = module("trackers")
    quickstart = load_study(BENCHMARKS.parent / "studies" / "quickstart.toml")
    for variant in trackers.VARIANTS:
        config = load_study(trackers.study_file(tmp_path, f"r1-{variant}", variant, 2, "http://127.0.0.1:1"))
        assert config.report.to == (() if variant == "none" else (variant,))
        assert config.study.n_trials == 2 and config.study.seed == quickstart.study.seed
        assert config.search == quickstart.search and config.student == quickstart.student


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_script_compiles_and_answers_help(script):
    """A benchmark runs for an hour on a quiet machine: a syntax error found then costs the hour."""
    import subprocess
    import sys

    source = (BENCHMARKS / script).read_text()
    compile(source, str(BENCHMARKS / script), "exec")  # a SyntaxError fails here, named
    if '__name__ == "__main__"' not in source:
        return  # a module the scripts import (peer.py), not a command
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
