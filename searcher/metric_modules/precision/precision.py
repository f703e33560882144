"""Offline 'precision' metric for `evaluate` (same name, inputs and macro average as the Hub's, without sklearn)."""

import evaluate

from searcher.metric_math import averaged, metric_info, per_class


class Precision(evaluate.Metric):
    def _info(self):
        return metric_info("Precision of a classifier, averaged over labels (macro by default).")

    def _compute(self, predictions, references, average="macro"):
        scores = per_class(predictions, references)
        return {"precision": averaged(scores[0], scores[3], predictions, references, average)}
