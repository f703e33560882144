"""Offline 'accuracy' metric for `evaluate` (same name and inputs as the Hub's)."""

import evaluate
import numpy as np

from searcher.metric_math import metric_info


class Accuracy(evaluate.Metric):
    def _info(self):
        return metric_info("Accuracy: the fraction of predictions equal to the references.")

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
