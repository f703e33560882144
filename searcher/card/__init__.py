"""Model cards, rendered after the fact from what the study stored: the trial's records and the study's attrs.

- `context`: a pure function that fills a typed `CardContext` (`facts`) section by section from storage alone;
- `data`: the YAML front matter through huggingface_hub's `ModelCardData` (model-index, and what our importer reads);
- `render`: the Jinja template (templates/, shipped in the package) laid out over the context, sandboxed and strict;
- `text`: escaping and naming helpers.

- `folders`: the card folder (README.md, the student, its tokenizer) that `searcher card` writes and `searcher push`
  uploads;
- `dashboard`, `attached`: what optuna-dashboard shows of a study (its note, a figure, each kept trial's card).

Publishing a card folder is searcher.hub.
"""

from searcher.card.context import context
from searcher.card.data import LEAD_METRICS, card_data
from searcher.card.facts import CardContext
from searcher.card.render import TEMPLATE, card_text, render, templates_dir, validate
from searcher.card.text import default_dataset_name, display_name, escape, fence, hub_id, repo_id_for

__all__ = ["context", "LEAD_METRICS", "card_data", "CardContext", "TEMPLATE", "card_text", "render", "templates_dir",
           "validate", "default_dataset_name", "display_name", "escape", "fence", "hub_id", "repo_id_for"]
