"""Offline 'f1' metric for `evaluate` (same name, inputs and macro average as the Hub's, without sklearn)."""

import evaluate

from searcher.metric_math import averaged, metric_info, per_class


class F1(evaluate.Metric):
    def _info(self):
        return metric_info("F1 of a classifier, averaged over labels (macro by default).")

    def _compute(self, predictions, references, average="macro"):
        scores = per_class(predictions, references)
        return {"f1": averaged(scores[2], scores[3], predictions, references, average)}
