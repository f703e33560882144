"""Running a study: optimize (any number of workers on one study) and asktell (a trial that `optuna ask` created)."""
