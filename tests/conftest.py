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
