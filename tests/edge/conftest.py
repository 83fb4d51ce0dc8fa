"""Edge tests run with numpy and ai-edge-litert alone (CI runs them in a
virtual environment without TensorFlow). The converted model they use comes
from $EDGELM_TEST_MODEL (a tflite/ folder converted earlier in the same CI
run) or, where TensorFlow is installed, is trained and converted here."""
import os
import shutil

import pytest


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("edge")
    given = os.environ.get("EDGELM_TEST_MODEL")
    if given:
        src = os.path.dirname(os.path.abspath(given.rstrip("/")))
        shutil.copytree(src, base / "run", ignore=shutil.ignore_patterns("checkpoints", "logs", "bench"))
        return base / "run" / "tflite"
    from convert.to_tflite import main as convert_main  # needs TensorFlow
    from training import rundir
    from pruning.trainer import train
    from tests.conftest import tiny_config, write_corpus
    corpus = write_corpus(base / "data", sizes=(("train", 600), ("valid", 60), ("test", 60)))
    rundir.prepare(str(base / "run"))
    train(tiny_config(corpus, base / "run", epochs=2), log=lambda *a: None)
    assert convert_main([str(base / "run"), "--quantize", "float32,dynamic"]) == 0
    return base / "run" / "tflite"
