"""What a study keeps: each trial's records (trial, re-exported here: `from searcher import records`), the study's
storage and study-level records (storage), saved students (checkpoints) and their deployable forms (export, latency),
and files attached to trials for optuna-dashboard (artifacts).

Imports the data and train stages (to export and time a student), never the search that writes these records.
"""

from searcher.records.trial import (  # noqa: F401
    BATCH, COHORT, ENQUEUED_FROM, EXPORT_LOCAL_ERROR, EXPORT_REASON, FAIL_REASON, FORMATS, HISTORY, HISTORY_LEAD,
    HISTORY_TAIL, HYPERPARAMS, LATENCY, LOSS_TERMS, METRICS, MODEL_DIR, PEAK_MEMORY, PRUNE_REASON, RECIPE, RUNTIME,
    SAMPLED_BY, SIZE, SOURCE_PUBLISHED, STUDENT, STUDY_FILE, TEACHER_WEIGHTS, TERM, TEST_METRICS, THRESHOLD,
    TRAINING_ROWS, WALL_TIME, WARM_START_SOURCE, WARM_START_TRIAL, WEIGHTS, TrialRecord, batch, best, completed,
    history_columns, history_rows, is_warm_start, own_trials, pareto, plain, rank_of, ranked, select, state_counts)
