"""Rendering a card: the template (ours ships inside the package) laid out over a `CardContext`, then checked.

Rendering uses a sandboxed Jinja environment with StrictUndefined: a typo fails loudly, and a template received with
someone else's study file cannot run code. The card must load with huggingface_hub and its model-index must
round-trip (`validate`). Writing the card folder is searcher.card.folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial

from searcher.card.context import context
from searcher.card.facts import CardContext
from searcher.config import StudyConfig
from searcher.errors import ConfigError, StudyError, first_line

TEMPLATE = "modelcard.md.j2"


def templates_dir() -> Path:
    """Ours: inside the installed package (searcher/templates), or the repository's templates/ in a checkout."""
    try:
        from importlib.resources import files

        packaged = Path(str(files("searcher.templates")))
        if (packaged / TEMPLATE).is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "templates"



def render(ctx: CardContext, template: Optional[Path] = None) -> str:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    path = Path(template) if template else templates_dir() / TEMPLATE
    if not path.is_file():
        raise ConfigError(f"card template {path} does not exist; fix [card] template or --template")
    # sandboxed: a template is code, and [card] template may come with a study file from someone else
    env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
                               keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    try:
        text = env.get_template(path.name).render(**ctx.variables())
    except jinja2.exceptions.SecurityError as e:
        raise ConfigError(f"card template {path} tried something a card template may not do ({e}); a template "
                          f"only lays out the card's variables (searcher.card.CardContext)") from e
    except jinja2.UndefinedError as e:
        raise ConfigError(f"card template {path}: {e.message}; fix the variable name (the context is "
                          f"searcher.card.CardContext)") from e
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"card template {path} line {e.lineno}: {e.message}") from e
    return text


def validate(text: str) -> None:
    """The card must load with ModelCard and its model-index must round-trip to eval results (offline)."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
        model_index_to_eval_results(card.data.to_dict()["model-index"])
    except Exception as e:
        raise StudyError(f"the rendered card's metadata is invalid ({first_line(e)}); check the card template's "
                         f"front matter") from e


def card_text(study: optuna.Study, config: StudyConfig, trial: FrozenTrial, repo_id: Optional[str] = None,
              template: Optional[Path] = None) -> str:
    ctx = context(study, trial, repo_id=repo_id, license=config.card.license, language=config.card.language,
                  dataset_name=config.card.dataset_name, base_model=config.card.base_model)
    text = render(ctx, template or config.card.template)
    validate(text)
    return text
