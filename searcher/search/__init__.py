"""Search stage: everything between a study file and a trained trial.

prepare (data, teacher, caches and every check before the study exists), space (the only module that calls
`trial.suggest_*`), objective (one trial: plan, build, distill, record, save), strategy (sampler, pruner, stop
rule), warmstart (copies of finished studies' trials), claim (the study-wide lock around trial creation), layerwise
(the layer-wise losses' checks and plan).
"""
