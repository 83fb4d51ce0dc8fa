import os
import random

import pytest

WORDS = "the cat sat on a mat and dog ran to big red house with green door".split()


def write_corpus(directory, layout="{}.txt", sizes=(("train", 400), ("valid", 40), ("test", 40)), seed=0):
    """A small PTB-format corpus of random sentences over 17 words."""
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    for split, n in sizes:
        with open(os.path.join(directory, layout.format(split)), "w") as f:
            for _ in range(n):
                f.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "\n")
    return str(directory)


@pytest.fixture
def tiny_corpus(tmp_path):
    return write_corpus(tmp_path / "data")


def tiny_config(data_dir, out, **overrides):
    """Options for a run that trains in a few seconds."""
    from pruning.train import DEFAULTS
    config = dict(DEFAULTS, data_dir=str(data_dir), out=str(out), embed=8, hidden=12, epochs=2,
                  batch_size=4, bptt=8, checkpoint_every=10)
    config.update(overrides)
    return config


def assert_float32_tflite_matches_keras(run_dir, tokens=30):
    """Convert `run_dir` to float32 and feed its first validation tokens to the
    .tflite and to the Keras step model: log-probabilities agree to 1e-4."""
    import numpy as np
    from convert.to_tflite import main as convert_main
    from edge_runtime import manifest as mf
    from edge_runtime.runner import StepModel
    from keras_models.language_model import build_step_model, load_model, zero_states
    assert convert_main([str(run_dir), "--quantize", "float32"]) == 0
    model = load_model(os.path.join(run_dir, "model"))
    step = build_step_model(model.spec, model.get_weights())
    manifest = mf.load(os.path.join(run_dir, "tflite"))
    lite = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    states = zero_states(step, 1)
    for t in np.load(os.path.join(run_dir, "data.npz"))["valid"][:tokens]:
        out = step([np.array([[t]], np.int32)] + states)
        states = [s.numpy() for s in out[1:]]
        np.testing.assert_allclose(lite.step(int(t)), out[0].numpy()[0], atol=1e-4)


# Run pruning.train with a signal sent to itself at the Nth train step
# (env SIGNAL_AT, SIGNAL: KILL for kill -9, INT for Ctrl-C).
SIGNAL_AT_STEP = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts with SIGINT ignored
import training.steps as t
real = t.make_train_step
def make(*a, **k):
    step = real(*a, **k)
    calls = [0]
    def counted(*a):
        calls[0] += 1
        if calls[0] == int(os.environ["SIGNAL_AT"]):
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["SIGNAL"]))
        return step(*a)
    return counted
t.make_train_step = make
from pruning.train import main
sys.exit(main(sys.argv[1:]))
"""
