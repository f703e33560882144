"""Data stage: load the splits (loading), tokenize them once into a cache (tokens), and the teacher-labelled text a
trial may also learn from (transfer: transfer sets and augmented copies made by augment).

Knows nothing of models, teachers or Optuna. The loading module's names are re-exported here
(`from searcher import data; data.load_task(...)`).
"""

from searcher.data.loading import (COMPRESSIONS, FORMATS, UNLABELED, Split, Task, load_task,  # noqa: F401
                                   load_transfer, locate, task_kind)
