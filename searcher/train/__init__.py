"""Train stage: one student distilled from its teacher's targets.

The loop (distill) and its optimizer step (step), batches made from tokenized rows (batching), forward passes over
whole splits (inference), where and how tensors run (runtime), building students (student) and loading
classifiers (models), and what a loss reads from a model's forward pass (outputs).

Knows nothing of Optuna, of teachers as objects (a teacher's targets arrive as arrays, its intermediate outputs as
an object with an `outputs` method) or of records.
"""
