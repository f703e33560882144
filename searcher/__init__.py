"""searcher: Optuna studies that distill a teacher into the best small student, with model cards and Hub publishing.

Stages, one module each, data flowing one way:
data -> teacher (+ logit cache) -> student -> distill -> objective/optimize -> records -> card -> hub.
"""

__version__ = "0.1.0"
