"""The parts of training that name no method: the corpus and its loading, the
run directory, checkpoints, tf.distribute, the compiled train step."""
