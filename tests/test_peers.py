"""benchmarks/peers.py's keyboard word: each system's step then the 3 words the
keyboard's own code shows, and the fastest sweep point within 5% of the dense
perplexity set against ORT's word. Hand-worked; no peer runtime needed. And
an unconverted run refused in one line."""
import numpy as np
import pytest

from benchmarks import peers
from edge_runtime.keyboard import Words
from edge_runtime.vocab import Vocab


class FakeStep:
    def __init__(self, logp):
        self.logp, self.fed = logp, []

    def step(self, token):
        self.fed.append(token)
        return self.logp


def test_a_peers_word_is_its_step_then_the_three_words_shown():
    vocab = Vocab(["<eos>", "<unk>", "N", "a", "b", "c", "d"])
    # <unk> and N are the most probable: never shown; then d, a and b tie (a lower id first), c last
    logp = np.log(np.array([0.05, 0.3, 0.2, 0.1, 0.1, 0.05, 0.2], np.float32))
    ort, floor = FakeStep(logp), peers.Bare.__new__(peers.Bare)
    calls = peers.word_calls({"ONNX Runtime dynamic int8": ort, "floor: matvec": floor}, [5, 6], Words(vocab))
    assert list(calls) == ["ONNX Runtime dynamic int8" + peers.WORD]  # a floor has no word
    assert calls["ONNX Runtime dynamic int8" + peers.WORD](1) == [6, 3, 4]
    assert ort.fed == [6]


def test_the_word_set_against_ort_is_the_fastest_way_of_the_fastest_point_within_5_percent():
    rows = {"edgelm dense-100:dynamic": dict(method="dense", test_perplexity=100.0),
            "edgelm l0-20:dynamic": dict(method="l0", test_perplexity=104.9),
            "edgelm lowrank-20:dynamic": dict(method="lowrank", test_perplexity=105.1)}  # outside 5%
    ms = {"edgelm dense-100:dynamic": (0.08, 0.10, 0.06), "edgelm l0-20:dynamic": (0.05, 0.07, 0.03),
          "edgelm lowrank-20:dynamic": (0.01, 0.02, 0.005), "ONNX Runtime dynamic int8": (0.066, 0.09, None)}
    times = {}
    for name, (step, word, suggested) in ms.items():
        times[name], times[name + peers.WORD] = dict(median=step), dict(median=word)
        if suggested is not None:
            times[name + peers.SUGGESTED] = dict(median=suggested)
    out = peers.against_peers(times, rows)
    assert out["point"] == "l0-20:dynamic" and out["over_ort_dynamic_int8"] == round(0.066 / 0.05, 3)
    assert out["word"] == dict(point="l0-20:dynamic", how="word via suggest", point_ms=0.03,
                               ort_dynamic_int8_ms=0.09, over_ort_dynamic_int8=3.0)


def test_an_unconverted_run_is_a_one_line_error_that_says_to_convert_it(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(SystemExit) as e:
        peers.reference_manifest(str(tmp_path / "run"))
    assert str(e.value).startswith("error: no manifest at ") and "\n" not in str(e.value)
    assert str(e.value).endswith(f"convert the run first: python -m convert.to_tflite {tmp_path / 'run'}")
