"""The card's YAML front matter as huggingface_hub data (`ModelCardData` + `EvalResult`), never hand-written YAML.

The model-index holds every final metric; what a machine must read back from our own cards lives here too.
"""

from __future__ import annotations

from typing import Optional

from searcher.card.facts import Usage
from searcher.card.text import hub_id
from searcher.tasks.metrics import title

# the final metrics a card lists and puts in the model-index, in this order; then the study's own metrics
LEAD_METRICS = ("loss", "cross_entropy")


def card_data(model_name: str, base_model: Optional[str], dataset_id: Optional[str], dataset_name: str,
              subset: Optional[str], split: str, metrics: dict, license: str, language: Optional[str],
              usage: Optional[Usage] = None, recipe: Optional[dict] = None, task=None):
    """The YAML front matter as huggingface_hub data: a valid model-index with every final metric, and under
    `searcher` the trial's recipe as data (`recipe_data`), which `searcher import` reads back instead of the prose.
    `task` (a searcher.tasks.TaskKind; default single-label) names the pipeline tag and the model-index task."""
    from huggingface_hub import EvalResult, ModelCardData

    from searcher import tasks

    task = task or tasks.kind(tasks.DEFAULT)

    dataset_type = dataset_id if hub_id(dataset_id) else dataset_name
    names = [k for k in LEAD_METRICS if metrics.get(k) is not None] + \
        [k for k in metrics if k not in LEAD_METRICS and metrics[k] is not None]
    results = [EvalResult(task_type=task.pipeline_tag, task_name=task.pipeline_title,
                          dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=subset,
                          dataset_split=split, metric_type=k, metric_name=title(k), metric_value=float(metrics[k]))
               for k in names]
    return ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=[dataset_id] if hub_id(dataset_id) else None,
        language=language,
        license=license,
        library_name="model2vec" if usage and usage.static else "transformers",
        pipeline_tag=task.pipeline_tag,
        # what a Hub user filters by: onnx files, and transformers.js when its whole layout is there
        tags=["generated_from_searcher", "knowledge-distillation", task.pipeline_tag]
        + (["model2vec", "static-embeddings"] if usage and usage.static else [])
        + (["onnx"] if usage and usage.onnx_file else []) + (["transformers.js"] if usage and usage.transformers_js
                                                              else []),
        metrics=[k for k in names if k not in LEAD_METRICS],
        eval_results=results,
        **({"searcher": recipe} if recipe else {}),
    )


def recipe_data(study_name: str, number: int, params: dict, hyperparams: dict, student: dict,
                checkpoint: Optional[str], distill: Optional[dict] = None, teachers: Optional[dict] = None) -> dict:
    """What `searcher import` needs to train this student again, exactly: the trial's parameters under the study
    file's names, every value it trained with, and its student (shape, init and a Hub checkpoint; never a local
    path). Floats go into YAML with repr, so they read back to the same bits."""
    from searcher.hyperparams import user_params

    keys = ("family", "static_dim", "static_train_embeddings", "static_head") if student.get("family") == "static" \
        else ("layers", "hidden", "heads", "init")  # a bert student's record stays as it was before families
    shape = {k: student[k] for k in keys if student.get(k) is not None}
    if checkpoint:
        shape["checkpoint"] = checkpoint
    return {"study": study_name, "trial": number, "params": user_params(params),
            "hyperparams": {k: v for k, v in hyperparams.items() if v is not None}, "student": shape,
            **({"distill": distill} if distill else {}), **({"teachers": teachers} if teachers else {})}

