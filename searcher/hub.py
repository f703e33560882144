"""Publishing: push chosen trials' card folders to the Hugging Face Hub, one commit per repo.

What is uploaded is exactly the folder `searcher card` writes. The token comes from HF_TOKEN or huggingface_hub's
login cache, is checked before any work, and is never printed, logged or stored, not even where the server's own
error text quotes it (searcher.redact). Pushing unchanged files makes no commit (the client skips files whose Hub
oid matches); transient failures (network, 5xx) are retried with backoff; only a successful push is recorded in the
study (study user attr `hub:trial-N`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher import card, records, redact
from searcher.card import folders
from searcher.config import StudyConfig
from searcher.errors import ConfigError, PublishError, RefusedError, first_line

log = logging.getLogger(__name__)

RETRIES = 3  # of the whole push; huggingface_hub also retries most single requests itself
BACKOFF_S = float(os.environ.get("SEARCHER_HUB_BACKOFF", "2.0"))  # first wait; doubles each retry


@dataclass(frozen=True)
class Target:
    trial: FrozenTrial
    repo_id: str


def published_key(number: int) -> str:
    return f"hub:trial-{number}"


def check_before_study(config: StudyConfig) -> None:
    """`[hub] push = ...`: the token and the repo id template are checked before any training, not after it."""
    _token()
    check_repo_id(card.repo_id_for(config.hub.repo_id, config.study.name, None), config.hub.repo_id)


def check_repo_id(repo_id: str, template: str) -> None:
    """Repo ids as the Hub validates them (owner/name, allowed characters, length)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise ConfigError(f"repo id {repo_id!r} (from {template!r}) must be owner/name")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ConfigError(f"repo id {repo_id!r} (from {template!r}) is not valid on the Hub: {first_line(e)}") from e


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (the token is read from the "
                           "environment or the login cache, never from the study file)")
    redact.secret(token)  # whatever quotes it from now on (a server's error text) shows ***
    return token


def targets(study: optuna.Study, config: StudyConfig, trial: Optional[int], top: Optional[int], pareto_front: bool,
            repo_id: Optional[str]) -> list[Target]:
    template = repo_id or config.hub.repo_id
    if not template:
        raise ConfigError(f"{config.path}: no repo id: pass --repo-id acme/{{study}}-L{{layers}}-H{{hidden}} or set "
                          f"[hub] repo_id")
    chosen = records.select(study, trial=trial, top=top, pareto_front=pareto_front)
    out = [Target(t, card.repo_id_for(template, config.study.name, t)) for t in chosen]
    seen: dict[str, int] = {}
    for t in out:
        if t.repo_id in seen:
            raise ConfigError(f"repo id template {template!r} gives {t.repo_id!r} for trials {seen[t.repo_id]} and "
                              f"{t.trial.number}; add {{trial}} to it")
        check_repo_id(t.repo_id, template)
        seen[t.repo_id] = t.trial.number
    return out


def push(study: optuna.Study, config: StudyConfig, trial: Optional[int] = None, top: Optional[int] = None,
         pareto_front: bool = False, repo_id: Optional[str] = None, private: Optional[bool] = None,
         dry_run: bool = False, out=print) -> list[dict]:
    """Push each chosen trial; returns what was recorded per trial (dry run: what would be uploaded)."""
    private = config.hub.private if private is None else private
    chosen = targets(study, config, trial, top, pareto_front, repo_id)
    if dry_run:
        return [_dry_run(study, config, t, private, out) for t in chosen]
    token = _token()  # before any work: a missing token fails in a second, not after rendering
    results = []
    for t in chosen:
        folder = folders.write_folder(study, config, t.trial, config.output_dir / "push" / f"trial-{t.trial.number:04d}",
                                   t.repo_id)
        result = redact.deep(_upload(folder, t, config, private, token))  # its URL is the server's text
        study.set_user_attr(published_key(t.trial.number), result)
        out(f"trial {t.trial.number} -> {result['url']} (commit {result['commit'][:12]}"
            f"{', unchanged' if not result['new_commit'] else ''})")
        results.append(result)
    _refresh_dashboard(study, config)
    return results


def _dry_run(study: optuna.Study, config: StudyConfig, t: Target, private: bool, out) -> dict:
    with tempfile.TemporaryDirectory() as d:
        folder = folders.write_folder(study, config, t.trial, Path(d) / "folder", t.repo_id)
        files = [(str(p.relative_to(folder)), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]
        text = (folder / "README.md").read_text()
    front = text.split("---", 2)[1].strip() if text.startswith("---") else ""
    out(f"dry run: trial {t.trial.number} -> {t.repo_id} ({'private' if private else 'public'}); nothing is sent")
    for name, size in files:
        out(f"  {name:<32} {_size(size):>10}")
    out("  card front matter:")
    for line in front.splitlines():
        out(f"    {line}")
    return {"repo_id": t.repo_id, "private": private, "files": dict(files)}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _retryable(error: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(error, (OSError, ConnectionError, TimeoutError)) or type(error).__module__.startswith("httpx")


def _upload(folder: Path, t: Target, config: StudyConfig, private: bool, token: str) -> dict:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    value = t.trial.values[0]
    message = f"searcher: study {config.study.name}, trial {t.trial.number} ({config.study.objectives[0]} {value:.4f})"
    description = (f"Distilled student from the Optuna study '{config.study.name}', trial {t.trial.number}. "
                   f"Rendered and uploaded by searcher.")
    existed = None
    last_error: Optional[BaseException] = None
    for attempt in range(1, RETRIES + 1):
        try:
            if existed is None:
                existed = api.repo_exists(t.repo_id)
            api.create_repo(t.repo_id, private=private, exist_ok=True)
            repo = api.repo_info(t.repo_id)
            actual = _visibility(repo, t.repo_id, private)
            info = api.upload_folder(repo_id=t.repo_id, folder_path=str(folder), commit_message=message,
                                     commit_description=description)
            return {"repo_id": t.repo_id, "commit": info.oid, "url": f"{_base(info.commit_url, t.repo_id)}",
                    "private": actual, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "new_commit": info.oid != repo.sha}
        except RefusedError:
            raise
        except Exception as e:  # noqa: BLE001 - sorted into retryable or not right below
            if not _retryable(e):
                raise PublishError(f"pushing trial {t.trial.number} to {t.repo_id} failed: {_reason(e)}; "
                                   f"nothing was recorded in the study") from e
            last_error = e
            if attempt < RETRIES:
                wait = BACKOFF_S * 2 ** (attempt - 1)
                log.warning("hub: %s (attempt %d of %d); retrying in %.0fs", first_line(e), attempt, RETRIES, wait)
                time.sleep(wait)
    if existed is False:
        _delete_if_empty(api, t.repo_id)
    raise PublishError(f"pushing trial {t.trial.number} to {t.repo_id} failed {RETRIES} times (last: "
                       f"{first_line(last_error)}); the study is unchanged: run the same command again later")


def _reason(error: BaseException) -> str:
    """The Hub's own words when it refused something (its message's details), else the error's first line."""
    server = getattr(error, "server_message", None)
    details = " ".join(line.strip("- ").strip() for line in str(server or "").splitlines()[1:] if line.strip())
    return redact.text(f"{first_line(error)} ({details})") if details else first_line(error)


def _visibility(repo, repo_id: str, private: bool) -> bool:
    """The repo's real visibility, read back from the Hub: an existing repo keeps its own. A private push (the
    default) into a public repo would publish the student; it is refused before anything is uploaded."""
    actual = bool(repo.private)
    if private and not actual:
        raise RefusedError(f"{repo_id} exists and is public, but this push is private (the default): pass --public "
                           f"to publish there, or choose another repo id; nothing was uploaded")
    if actual and not private:
        log.warning("hub: %s exists and is private; it stays private (change its visibility on the Hub)", repo_id)
    return actual


def _base(commit_url: str, repo_id: str) -> str:
    """The repo's page: the commit URL up to the repo id."""
    i = commit_url.find(repo_id)
    return commit_url[: i + len(repo_id)] if i >= 0 else commit_url


def _delete_if_empty(api, repo_id: str) -> None:
    """A repo we created in this push but never committed to is removed, so nothing half-made stays behind."""
    try:
        files = api.list_repo_files(repo_id)
        if set(files) <= {".gitattributes"}:
            api.delete_repo(repo_id)
    except Exception as e:  # noqa: BLE001 - best effort while reporting the real failure
        log.warning("hub: could not remove the empty repo %s (%s)", repo_id, first_line(e))


def _refresh_dashboard(study: optuna.Study, config: StudyConfig) -> None:
    from searcher.card import dashboard

    dashboard.update_note(study, config)  # the note lists what is published


def push_after_study(config: StudyConfig, study: optuna.Study) -> list[dict]:
    """`[hub] push = "best" | "top-k" | "pareto"`: publish when `searcher optimize` finishes."""
    mode = config.hub.push
    if mode == "none":
        return []
    log.info("hub: publishing (%s) as the study file asks", mode)
    return push(study, config, top=config.hub.top_k if mode == "top-k" else None, pareto_front=mode == "pareto")
