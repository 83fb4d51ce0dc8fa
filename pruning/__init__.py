"""How a model is trained and made smaller: data, TF-MOT schedules, the training loop."""
