"""The knob: a sweep of trained, converted and measured operating points, their
frontier, plots and report. It runs the layers below it (training, conversion,
the device runtime); its commands are `python -m pruning.sweep` and
`python -m pruning.report`."""
