"""Training a model and making it smaller: the trainer's phases, the registry
of methods, and the user's commands (`python -m pruning.train`, and the
knob's `pruning.sweep` and `pruning.report`, which only call `knob/`)."""
