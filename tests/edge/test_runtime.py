"""The step model on the device: any token id is safe, both LiteRT APIs give the
signature runner's numbers, the `suggest` signature shows `top_words`' words,
and a file whose signatures do not match its manifest is refused."""
import json
import shutil

import numpy as np
import pytest

from edge_runtime import manifest as mf
from edge_runtime.metrics import top_words
from edge_runtime.predict import main
from edge_runtime.runner import APIS, StepModel
from edge_runtime.vocab import Vocab

from ai_edge_litert.interpreter import Interpreter

TOKENS = [5, 17, 3, 99, 42, 7, 1, 250, 8, 8, 8]


def variants(manifest):
    return [n for n, v in manifest["variants"].items() if v["status"] == "ok"]


def reference_steps(path, states, tokens):
    """log-probabilities through LiteRT's own signature runner, float state fed back
    as it comes out (or, in a file with the state inside, the token alone from
    the state the file loads with): the plain use of the API the StepModel optimises."""
    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("step")
    if "set_state" in interpreter.get_signature_list():
        return [runner(token=np.array([t], np.int32))["log_probs"].reshape(-1) for t in tokens]
    ins, outs = runner.get_input_details(), runner.get_output_details()

    def deq(x, d):
        scale, zero = d["quantization"]
        return x.astype(np.float32) if scale == 0 else (x.astype(np.float32) - zero) * scale

    def q(x, d):
        scale, zero = d["quantization"]
        return x.astype(d["dtype"]) if scale == 0 else np.clip(np.round(x / scale) + zero, -128, 127).astype(d["dtype"])

    state = {s["input"]: np.zeros(ins[s["input"]]["shape"], np.float32) for s in states}
    got = []
    for t in tokens:
        out = runner(token=np.array([t], np.int32), **{n: q(v, ins[n]) for n, v in state.items()})
        state = {s["input"]: deq(out[s["output"]], outs[s["output"]]) for s in states}
        got.append(deq(out["log_probs"], outs["log_probs"]).reshape(-1))
    return got


@pytest.fixture(scope="module")
def model_files(tflite_dir):
    manifest = mf.load(str(tflite_dir))
    return manifest, Vocab.load(mf.vocab_path(manifest))


@pytest.mark.parametrize("api", APIS)
def test_both_apis_give_the_signature_runners_log_probs(model_files, api):
    manifest, _ = model_files
    for name in variants(manifest):
        path = mf.variant_path(manifest, name)
        expected = reference_steps(path, manifest["states"], TOKENS)
        model = StepModel(path, manifest["states"], api=api)
        for _ in range(2):  # and again after reset
            got = [model.step(t) for t in TOKENS]
            for g, e in zip(got, expected):
                np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=f"{name} {api}")
            model.reset()


@pytest.mark.parametrize("api", APIS)
def test_any_token_id_is_read_as_unk(model_files, api):
    manifest, vocab = model_files
    for name in variants(manifest):
        model = StepModel(mf.variant_path(manifest, name), manifest["states"], api=api)
        model.step(TOKENS[0])
        saved = {k: v.copy() for k, v in model.state.items()}
        unk = model.step(vocab.unk_id)
        for bad in (-1, len(vocab), 2 ** 31 - 1):
            model.state = {k: v.copy() for k, v in saved.items()}
            got = model.step(bad)
            assert np.isfinite(got).all(), (name, bad)
            np.testing.assert_array_equal(got, unk, err_msg=f"{name} {api} id {bad}")


@pytest.mark.parametrize("api", APIS)
def test_suggest_signature_shows_top_words_of_step(model_files, api):
    manifest, vocab = model_files
    assert manifest["suggest"]["k"] == 3
    for name in variants(manifest):
        path = mf.variant_path(manifest, name)
        stepper, suggester = StepModel(path, manifest["states"]), StepModel(path, manifest["states"], api=api)
        assert suggester.top_k == 3
        for t in TOKENS:
            logp = stepper.step(t)
            ids, logits = suggester.suggest(t, vocab.never_suggested)
            assert not set(ids) & set(vocab.never_suggested)
            if name == "int8":
                # int8 rounds the logits and the log-probabilities on scales of their own, so the
                # two rankings may part among near-equals: each word shown is within one step of
                # the log-softmax's output scale (1/16 nat) and a rounding of the logits of the
                # word step would show in its place
                expected = logp[top_words(logp, 3, vocab.never_suggested)]
                assert np.all(logp[ids] >= expected - 0.125), (t, logp[ids], expected)
            else:
                assert list(ids) == top_words(logp, 3, vocab.never_suggested), (name, t)
                # logits less log-probabilities is the log of the normaliser, one number
                assert np.ptp(logits - logp[ids]) < 1e-4, (name, t)
        # the two signatures share one state: suggest then step = step then step
        a, b = StepModel(path, manifest["states"], api=api), StepModel(path, manifest["states"], api=api)
        a.suggest(TOKENS[0], vocab.never_suggested)
        b.step(TOKENS[0])
        np.testing.assert_allclose(a.step(TOKENS[1]), b.step(TOKENS[1]), rtol=1e-5, atol=1e-5)


def test_signatures_must_match_the_manifest(model_files, tmp_path, capsys):
    manifest, _ = model_files
    wrong = [dict(s, input=s["input"] + "_x") for s in manifest["states"]]
    for name in variants(manifest):  # the state as inputs, or inside (set by set_state)
        with pytest.raises(mf.ManifestError, match="the '(step|set_state)' signature has inputs"):
            StepModel(mf.variant_path(manifest, name), wrong)
    copy = tmp_path / "tflite"
    shutil.copytree(manifest["_dir"], copy)
    data = json.loads((copy / mf.FILE).read_text())
    data["states"] = wrong
    (copy / mf.FILE).write_text(json.dumps(data))
    code = main(["suggest", "--model", str(copy), "--text", "the"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "signature" in err


def test_top_k_out_of_range_is_one_line_error(model_files, capsys):
    manifest, vocab = model_files
    for k in (0, len(vocab) - 1):
        code = main(["suggest", "--model", manifest["_dir"], "--text", "the", "--top-k", str(k)])
        err = capsys.readouterr().err
        assert code == 2 and err.strip() == (f"error: --top-k must be between 1 and {len(vocab) - 2} "
                                             f"(the vocabulary's {len(vocab)} ids less <unk> and <eos>); got {k}")


def test_more_words_than_the_file_holds_come_from_step(model_files, capsys):
    manifest, vocab = model_files
    code = main(["suggest", "--model", manifest["_dir"], "--variant", "float32", "--text", "the ", "--top-k", "5",
                 "--json"])
    got = [s["word"].lower() for s in json.loads(capsys.readouterr().out)["suggestions"]]  # "I" shown capitalised
    model = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    model.step(vocab.eos_id)
    logp = model.step(vocab.index["the"] if "the" in vocab.index else vocab.unk_id)
    never = vocab.never_suggested + ((vocab.index["N"],) if "N" in vocab.index else ())
    assert code == 0 and got == [vocab.tokens[i] for i in top_words(logp, 5, never)]
