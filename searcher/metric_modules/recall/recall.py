"""Offline 'recall' metric for `evaluate` (same name, inputs and macro average as the Hub's, without sklearn)."""

import evaluate

from searcher.metric_math import averaged, metric_info, per_class


class Recall(evaluate.Metric):
    def _info(self):
        return metric_info("Recall of a classifier, averaged over labels (macro by default).")

    def _compute(self, predictions, references, average="macro"):
        scores = per_class(predictions, references)
        return {"recall": averaged(scores[1], scores[3], predictions, references, average)}
