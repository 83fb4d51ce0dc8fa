"""Conversion of a tiny trained run: the .tflite step models against the
Keras step model, builtin ops only, the manifest, bad input."""
import json
import os
import shutil

import numpy as np
import pytest

from convert.to_tflite import main as convert_main
from edge_runtime import manifest as mf
from edge_runtime.runner import StepModel, evaluate_ids
from edge_runtime.vocab import Vocab
from keras_models.language_model import build_step_model, load_model, zero_states
from training import rundir
from pruning.trainer import train
from tests.conftest import tiny_config

from ai_edge_litert.interpreter import Interpreter


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One tiny pruned QRNN run, converted to all four precisions."""
    from tests.conftest import write_corpus
    base = tmp_path_factory.mktemp("conv")
    corpus = write_corpus(base / "data", sizes=(("train", 600), ("valid", 60), ("test", 60)))
    out = base / "run"
    rundir.prepare(str(out))
    train(tiny_config(corpus, out, epochs=2, target_sparsity=0.5), log=lambda *a: None)
    assert convert_main([str(out)]) == 0
    return out


def test_float32_log_probs_match_keras_step_model(converted):
    model = load_model(str(converted / "model"))
    step = build_step_model(model.spec, model.get_weights())
    manifest = mf.load(str(converted / "tflite"))
    lite = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    ids = np.load(converted / "data.npz")["valid"][:300]
    states = zero_states(step, 1)
    for t in ids:
        out = step([np.array([[t]], np.int32)] + states)
        states = [s.numpy() for s in out[1:]]
        np.testing.assert_allclose(lite.step(int(t)), out[0].numpy()[0], atol=1e-4)
    # the float32 file keeps its state inside: get_state reads Keras's state, set_state hands one over
    assert lite.inside and manifest["variants"]["float32"]["state"] == "inside"
    for s, want in zip(manifest["states"], states):
        np.testing.assert_allclose(lite.state[s["input"]], want, atol=1e-5)
    later = step([np.array([[7]], np.int32)] + states)
    lite.reset()
    lite.state = {s["input"]: v for s, v in zip(manifest["states"], states)}
    np.testing.assert_allclose(lite.step(7), later[0].numpy()[0], atol=1e-4)


def test_perplexities_agree_and_are_recorded(converted):
    manifest = mf.load(str(converted / "tflite"))
    keras_ppl = manifest["eval"]["keras_perplexity"]
    tolerance = {"float32": 0.01, "float16": 0.01, "dynamic": 0.03, "int8": 0.03, "int4": 0.05}
    for name, v in manifest["variants"].items():
        assert v["status"] == "ok", v
        assert abs(v["perplexity"] / keras_ppl - 1) < tolerance[name], (name, v["perplexity"], keras_ppl)
    # the device's own evaluation of the float32 file gives the converter's figure
    ids = np.load(converted / "data.npz")["valid"]
    lite = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    vocab = Vocab.load(mf.vocab_path(manifest))
    r = evaluate_ids(lite, ids, vocab.never_suggested)
    assert r["perplexity"] == pytest.approx(manifest["variants"]["float32"]["perplexity"], rel=1e-4)
    # R@3 has one definition (edge_runtime/metrics.py): the Keras figure and the device's agree
    assert round(r["r_at_3"], 4) == manifest["variants"]["float32"]["r_at_3"]
    assert abs(r["r_at_3"] - manifest["eval"]["keras_r_at_3"]) <= 2 / manifest["eval"]["tokens"]


def file_ops_and_matrices(path):
    """(every builtin op the file uses, in any subgraph; {constant matrix name:
    its type}), read from the flatbuffer: LiteRT's Python API lists the ops of
    subgraph 0 alone."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    ops = {names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes}
    matrices = {t.name.decode(): types[t.type] for g in model.subgraphs for t in g.tensors
                if model.buffers[t.buffer].data is not None and t.shape is not None
                and len(t.shape) == 2 and min(t.shape) > 1}
    return ops, matrices


def test_builtin_ops_only_and_step_signature(converted):
    manifest = mf.load(str(converted / "tflite"))
    names = {s["input"] for s in manifest["states"]}
    # --state auto: the state inside wherever it gives the same outputs; int8 is not tried
    assert {n: v["state"] for n, v in manifest["variants"].items()} == dict(
        float32="inside", float16="inside", dynamic="inside", int8="io", int4="inside")
    for name, v in manifest["variants"].items():
        interp = Interpreter(model_path=mf.variant_path(manifest, name))
        ops, _ = file_ops_and_matrices(mf.variant_path(manifest, name))
        assert "FULLY_CONNECTED" in ops and "CUSTOM" not in ops, (name, ops)  # Flex ops are CUSTOM
        sigs = interp.get_signature_list()
        if v["state"] == "inside":
            assert (set(sigs["step"]["inputs"]), set(sigs["step"]["outputs"])) == ({"token"}, {"log_probs"})
            assert set(sigs["set_state"]["inputs"]) == set(sigs["get_state"]["outputs"]) == names
        else:
            assert set(sigs["step"]["inputs"]) == {"token"} | names
            assert set(sigs["step"]["outputs"]) == {"log_probs"} | {s["output"] for s in manifest["states"]}
        assert manifest["variants"][name]["inputs"]["token"] == dict(
            shape=[1], dtype="int32", quantization=dict(scale=0.0, zero_point=0))


def runs_with_xnnpack(path, states):
    from edge_runtime.runner import StepModel
    try:
        StepModel(path, states, delegate="xnnpack")  # one step: XNNPACK prepares there, or fails
    except Exception:
        return False
    return True


def test_manifest_contents(converted):
    manifest = json.loads((converted / "tflite" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["vocab"]["sha256"] == mf.sha256_file(str(converted / "tflite" / "vocab.txt"))
    for name, v in manifest["variants"].items():
        path = converted / "tflite" / v["file"]
        assert v["bytes"] == os.path.getsize(path) and v["sha256"] == mf.sha256_file(str(path))
        # XNNPACK takes every op of a dense-encoded step; a sparse-encoded one fails to prepare (DESIGN's
        # platform facts). The claim is checked against the runtime itself: one step with the delegate.
        assert v["xnnpack"]["ok"] is (not v["sparse_encoding"]) is runs_with_xnnpack(str(path), manifest["states"])
    assert sorted(os.listdir(converted / "tflite")) == sorted(
        ["manifest.json", "vocab.txt"] + [f"{n}.tflite" for n in manifest["variants"]])


def test_int8_io_quantizes_state_tensors(converted, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(converted, run, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(run), "--quantize", "int8", "--int8-io", "int8"]) == 0
    manifest = mf.load(str(run / "tflite"))
    v = manifest["variants"]["int8"]
    assert v["inputs"]["l0_c"]["dtype"] == "int8" and v["inputs"]["token"]["dtype"] == "int32"
    assert abs(v["perplexity"] / manifest["eval"]["keras_perplexity"] - 1) < 0.05


def test_bad_input_one_line_exit_2(converted, tmp_path, capsys):
    def err(args):
        assert convert_main(args) == 2
        text = capsys.readouterr().err.strip()
        assert text.startswith("error: ") and "\n" not in text
        return text
    assert "does not exist" in err([str(tmp_path / "nope")])
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    assert "is incomplete" in err([str(tmp_path / "half")])
    assert "unknown precision int3" in err([str(converted), "--quantize", "float32,int3", "--force"])
    assert "--state must be one of auto, io" in err([str(converted), "--state", "in", "--force"])
    before = (converted / "tflite" / "manifest.json").read_bytes()
    assert "already exists; use --force" in err([str(converted)])
    assert (converted / "tflite" / "manifest.json").read_bytes() == before
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(converted, broken, ignore=shutil.ignore_patterns("tflite"))
    (broken / "model" / "weights.h5").write_bytes(b"not an h5 file")
    assert "cannot load the run" in err([str(broken)])
    assert not (broken / "tflite").exists()
    size = len(Vocab.load(str(converted / "vocab.txt")))
    for k in (-1, size - 1):  # a suggest signature of k >= V - 2 shows <unk> or <eos>, or runs out of words
        assert f"--top-k must be between 1 and {size - 2}" in err([str(converted), "--top-k", str(k), "--force"])
    assert (converted / "tflite" / "manifest.json").read_bytes() == before


def test_suggest_signature_and_top_k_0_without_it(converted, tmp_path):
    import shutil
    manifest = mf.load(str(converted / "tflite"))
    assert manifest["suggest"].pop("two_stage") == dict(chosen=False, reason="--two-stage off")  # the default
    assert manifest["suggest"] == dict(signature="suggest", k=3, ids="ids", scores="logits",
                                       never_suggested=[Vocab.load(str(converted / "vocab.txt")).unk_id,
                                                        Vocab.load(str(converted / "vocab.txt")).eos_id])
    for name, v in manifest["variants"].items():
        sig = Interpreter(model_path=mf.variant_path(manifest, name)).get_signature_list()["suggest"]
        states_out = {s["output"] for s in manifest["states"]} if v["state"] == "io" else set()
        assert set(sig["outputs"]) == {"ids", "logits"} | states_out
    run = tmp_path / "run"
    shutil.copytree(converted, run, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(run), "--quantize", "int8,dynamic", "--top-k", "0"]) == 0
    plain = mf.load(str(run / "tflite"))
    assert plain["suggest"] is None
    assert list(Interpreter(model_path=mf.variant_path(plain, "int8")).get_signature_list()) == ["step"]
    assert sorted(Interpreter(model_path=mf.variant_path(plain, "dynamic")).get_signature_list()) == [
        "get_state", "set_state", "step"]
    assert plain["variants"]["int8"]["bytes"] < manifest["variants"]["int8"]["bytes"]
    model = StepModel(mf.variant_path(plain, "int8"), plain["states"])
    assert model.top_k is None


def test_state_io_keeps_todays_files_and_the_same_outputs(converted, tmp_path):
    """--state io: the state as inputs and outputs; the same log-probabilities,
    suggestions and state as the file with it inside."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(converted, run, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(run), "--quantize", "float32", "--state", "io"]) == 0
    io_manifest, manifest = mf.load(str(run / "tflite")), mf.load(str(converted / "tflite"))
    assert io_manifest["variants"]["float32"]["state"] == "io"
    io = StepModel(mf.variant_path(io_manifest, "float32"), io_manifest["states"])
    inside = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    assert (io.inside, inside.inside) == (False, True)
    never = manifest["suggest"]["never_suggested"]
    for i, t in enumerate(np.load(converted / "data.npz")["valid"][:40]):
        if i % 3:
            np.testing.assert_array_equal(io.step(int(t)), inside.step(int(t)))
        else:
            a, b = io.suggest(int(t), never), inside.suggest(int(t), never)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    for name in io.state:
        np.testing.assert_array_equal(io.state[name], inside.state[name])


@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    """A tiny untied QRNN, 90% sparse, trained and not converted."""
    from tests.conftest import write_corpus
    base = tmp_path_factory.mktemp("untied")
    corpus = write_corpus(base / "data")
    out = base / "run"
    rundir.prepare(str(out))
    train(tiny_config(corpus, out, schedule="constant", target_sparsity=0.9, begin_step=0,
                      tie_embeddings=False, embed=32, hidden=64, epochs=1), log=lambda *a: None)
    return out


def test_sparse_encoding_on_a_sparse_untied_model(untied, tmp_path):
    """90%-sparse matrices: the sparse file is smaller, computes the same
    model, and the manifest says truly whether XNNPACK can run it."""
    out = tmp_path / "run"
    shutil.copytree(untied, out)
    assert convert_main([str(out), "--quantize", "float32,dynamic", "--sparse-encoding", "off"]) == 0
    dense = mf.load(str(out / "tflite"))
    assert convert_main([str(out), "--quantize", "float32,dynamic", "--sparse-encoding", "on", "--force"]) == 0
    sparse = mf.load(str(out / "tflite"))
    for name in ("float32", "dynamic"):
        v = sparse["variants"][name]
        assert v["status"] == "ok" and v["sparse_encoding"] is True, v
        assert v["bytes"] < dense["variants"][name]["bytes"]
        assert v["perplexity"] == pytest.approx(dense["variants"][name]["perplexity"], rel=1e-3)
        try:
            StepModel(mf.variant_path(sparse, name), sparse["states"], delegate="xnnpack").step(0)
            works = True
        except Exception:
            works = False
        assert v["xnnpack"]["ok"] is works


def test_a_failing_variant_is_reported_and_the_others_go_on(converted, tmp_path, monkeypatch, capsys):
    import shutil

    import convert.variants as variants
    run = tmp_path / "run"
    shutil.copytree(converted, run, ignore=shutil.ignore_patterns("tflite"))
    real = variants.make_converter

    class Broken:
        def convert(self):
            os.write(2, b"loc(\"x\"): error: 'tfl.fancy' op is not supported\n")  # as MLIR reports
            raise RuntimeError("")

    monkeypatch.setattr(variants, "make_converter",
                        lambda d, precision, *a, **k: Broken() if precision == "float16" else real(d, precision, *a, **k))
    assert convert_main([str(run), "--quantize", "float32,float16"]) == 1
    manifest = mf.load(str(run / "tflite"))
    assert manifest["variants"]["float32"]["status"] == "ok"
    failed = manifest["variants"]["float16"]
    assert failed["status"] == "failed" and "'tfl.fancy' op is not supported" in failed["error"]
    assert not (run / "tflite" / "float16.tflite").exists()
    assert "| float16 | failed: " in capsys.readouterr().out


def test_a_tflite_folder_is_pointed_to_its_run(converted, capsys):
    assert convert_main([str(converted / "tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {converted / 'tflite'} is the tflite/ folder a conversion wrote; give the run "
                   f"directory above it: {os.path.relpath(converted)}")


def test_a_sparse_file_that_does_not_run_is_not_the_same_model(converted, tmp_path):
    from convert.to_tflite import _same_outputs
    manifest = mf.load(str(converted / "tflite"))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 64)
    why = _same_outputs(mf.variant_path(manifest, "float32"), str(broken), manifest["states"], [0, 1, 2])
    assert why and why.startswith("it does not run: ")  # a reason, not an exception later
    assert _same_outputs(mf.variant_path(manifest, "float32"), mf.variant_path(manifest, "float32"),
                         manifest["states"], [0, 1, 2]) is None


def test_ctrl_c_during_conversion_leaves_the_old_files(converted, monkeypatch, capsys):
    from convert import variants

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    before = (converted / "tflite" / "manifest.json").read_bytes()
    entries = sorted(os.listdir(converted))
    monkeypatch.setattr(variants, "make_converter", interrupted)
    assert convert_main([str(converted), "--quantize", "float32", "--force"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"interrupted: nothing written; {converted / 'tflite'} is as it was"
    assert (converted / "tflite" / "manifest.json").read_bytes() == before
    assert sorted(os.listdir(converted)) == entries  # no half-built folder left beside it


def test_int4_quantizes_every_matrix_and_the_embedding(converted):
    """int4 is the float32 file with 4-bit weights: every constant matrix,
    the embedding table too, looked up by EMBEDDING_LOOKUP (the op the
    quantizer takes) where the float32 file has GATHER."""
    manifest = mf.load(str(converted / "tflite"))
    ops, matrices = file_ops_and_matrices(mf.variant_path(manifest, "int4"))
    assert "EMBEDDING_LOOKUP" in ops and "GATHER" not in ops, ops
    assert matrices and set(matrices.values()) == {"INT4"}, matrices
    ops, matrices = file_ops_and_matrices(mf.variant_path(manifest, "float32"))
    assert "GATHER" in ops and set(matrices.values()) == {"FLOAT32"}, matrices


def test_all_leaves_int4_out_without_the_quantizer(monkeypatch):
    import importlib.util
    from convert.variants import parse_precisions
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ai_edge_quantizer" else real(name, *a))
    assert parse_precisions("all") == ("float32", "float16", "dynamic", "int8")
    with pytest.raises(ValueError, match=r"int4 needs ai-edge-quantizer: pip install -e '\.\[quantizer\]'"):
        parse_precisions("dynamic,int4")


def weights_by_op(path):
    """[(op name, its output tensor's name, its weight input's type)] for every
    FULLY_CONNECTED and EMBEDDING_LOOKUP in any subgraph, from the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out = []
    for g in model.subgraphs:
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            if name in ("FULLY_CONNECTED", "EMBEDDING_LOOKUP"):
                weight = g.tensors[op.inputs[1]]  # FC: (input, weights); lookup: (ids, table)
                out.append((name, g.tensors[op.outputs[0]].name.decode(), types[weight.type]))
    return out


def test_int4mixed_keeps_the_output_layer_in_int8(untied, tmp_path):
    """int4mixed, untied: int4 embedding and recurrent matrices, the output layer's in int8, and
    the perplexity of a file that close to the Keras model's."""
    run = tmp_path / "run"
    shutil.copytree(untied, run, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(run), "--quantize", "int4mixed,int4", "--sparse-encoding", "off"]) == 0
    manifest = mf.load(str(run / "tflite"))
    ops = weights_by_op(mf.variant_path(manifest, "int4mixed"))
    output = [t for op, name, t in ops if "output" in name and op == "FULLY_CONNECTED"]
    lookup = [t for op, name, t in ops if op == "EMBEDDING_LOOKUP"]
    recurrent = [t for op, name, t in ops if "rnn_" in name and op == "FULLY_CONNECTED"]
    assert set(output) == {"INT8"} and set(lookup) == {"INT4"} and recurrent and set(recurrent) == {"INT4"}, ops
    assert {t for _, _, t in weights_by_op(mf.variant_path(manifest, "int4"))} == {"INT4"}
    v, keras_ppl = manifest["variants"]["int4mixed"], manifest["eval"]["keras_perplexity"]
    assert v["status"] == "ok" and v["state"] == "inside" and abs(v["perplexity"] / keras_ppl - 1) < 0.05, v
    assert manifest["variants"]["int4"]["bytes"] < v["bytes"]  # the output layer's int8 costs bytes


def tables(path, shape):
    """{buffer: {(op reading it, tensor type)}} for the constants of `shape`, in every subgraph."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out = {}
    for g in model.subgraphs:
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            for i in op.inputs:
                t = g.tensors[i] if i >= 0 else None
                if t is not None and list(t.shape) == list(shape) and model.buffers[t.buffer].data is not None:
                    out.setdefault(t.buffer, set()).add(
                        (names[max(code.builtinCode, code.deprecatedBuiltinCode)], types[t.type]))
    return out


def words_corpus(folder, seed, valid):
    """train, valid and test splits of 8-word sentences drawn from 200 words."""
    import random
    rng = random.Random(seed)
    for split, n in (("train", 300), ("valid", valid), ("test", 30)):
        with open(folder / f"{split}.txt", "w") as f:
            f.writelines(" ".join(f"w{rng.randrange(200)}" for _ in range(8)) + "\n" for _ in range(n))


@pytest.fixture(scope="module", params=["embedding", "lowrank"])
def tied_wide(request, tmp_path_factory):
    """A tied run over 200 words, wide enough that the converter quantizes its
    table (it leaves constants under 1,024 numbers in float): a QRNN with a
    plain embedding, or an LSTM with the embedding at rank 8 (A B)."""
    base = tmp_path_factory.mktemp("tied")
    words_corpus(base, seed=1, valid=30)
    out = base / "run"
    rundir.prepare(str(out))
    extra = (dict(embed=8) if request.param == "embedding" else
             dict(arch="lstm", embed=16, hidden=16, factorize="lowrank", factorize_scope="all", rank=8))
    train(tiny_config(base, out, schedule="none", epochs=1, **extra), log=lambda *a: None)
    assert convert_main([str(out), "--quantize", "dynamic,int4mixed", "--sparse-encoding", "off"]) == 0
    return out, request.param


def test_a_tied_table_is_stored_once(tied_wide):
    """A tied embedding is the output layer's matrix: dynamic and int4mixed store
    it once, in int8, read by the lookup and the output layer in every
    signature. (With GATHER the converter gave the lookup a copy of its own.)"""
    run, kind = tied_wide
    manifest = mf.load(str(run / "tflite"))
    spec = manifest["architecture"]
    shape = [spec["vocab_size"], spec["embed"] if kind == "embedding" else spec["factors"]["embedding/embeddings"]["rank"]]
    for name in ("dynamic", "int4mixed"):
        found = tables(mf.variant_path(manifest, name), shape)
        assert len(found) == 1, (name, found)
        assert found.popitem()[1] == {("EMBEDDING_LOOKUP", "INT8"), ("FULLY_CONNECTED", "INT8")}, name
        v = manifest["variants"][name]
        assert v["status"] == "ok" and abs(v["perplexity"] / manifest["eval"]["keras_perplexity"] - 1) < 0.03, v
    recurrent = [t for op, name, t in weights_by_op(mf.variant_path(manifest, "int4mixed"))
                 if "rnn_" in name and op == "FULLY_CONNECTED"]
    assert recurrent and set(recurrent) == {"INT4"}, recurrent


def test_int4_keeps_a_factor_read_both_ways_in_int8(tied_wide, tmp_path, capsys):
    """A low-rank tied embedding's second factor B is read after the lookup (B^T in the file) and
    before the output's first factor (B): int4 would round each copy by its own channels. Both
    copies stay int8, and say so; every other matrix is int4, and the file computes what Keras does."""
    run, kind = tied_wide
    if kind != "lowrank":
        pytest.skip("a plain embedding has no factor read both ways")
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tflite"))
    assert convert_main([str(copy), "--quantize", "int4", "--sparse-encoding", "off"]) == 0
    assert "second factor stays in int8" in capsys.readouterr().out
    manifest = mf.load(str(copy / "tflite"))
    ops = weights_by_op(mf.variant_path(manifest, "int4"))
    factor = [(name, t) for op, name, t in ops if op == "FULLY_CONNECTED" and
              ("/embedding/MatMul_1" in name or name.endswith("/output/MatMul"))]
    assert len(factor) == 4 and {t for _, t in factor} == {"INT8"}, factor  # two signatures, two copies each
    others = {t for op, name, t in ops if (name, t) not in factor}
    assert others == {"INT4"}, ops
    v = manifest["variants"]["int4"]
    assert v["status"] == "ok" and abs(v["perplexity"] / manifest["eval"]["keras_perplexity"] - 1) < 0.05, v


def test_quantization_parameters_are_written_once(tied_wide, tmp_path):
    """The converter writes each set of quantization parameters once, shared by
    every tensor (in every signature) that has it: against the same file with
    a copy per tensor, the flatbuffer's own tables are fewer, the file is
    smaller by at least the copies' bytes, and both APIs compute the same."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from convert.flatbuffer import share_quantization
    run, _ = tied_wide
    manifest = mf.load(str(run / "tflite"))
    path = mf.variant_path(manifest, "dynamic")
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")  # the object API: one copy per tensor
    copies = bytes(builder.Output())

    def tables(data):
        """(tables referenced, distinct parameters, bytes of the scales and zero points beyond one copy each)."""
        m = schema.Model.GetRootAs(data, 0)
        positions, size = {}, {}
        for g in (m.Subgraphs(i) for i in range(m.SubgraphsLength())):
            for t in (g.Tensors(j) for j in range(g.TensorsLength())):
                q = t.Quantization()
                if q is not None and q.ScaleLength():
                    key = (q.ScaleAsNumpy().tobytes(), q.ZeroPointAsNumpy().tobytes(), q.QuantizedDimension())
                    positions.setdefault(key, set()).add(q._tab.Pos)
                    size[key] = 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
        repeated = sum((len(p) - 1) * size[k] for k, p in positions.items())
        return sum(len(p) for p in positions.values()), len(positions), repeated
    many, distinct, repeated = tables(copies)
    assert many > distinct and repeated > 0  # two signatures: the same weights' parameters twice
    assert tables(open(path, "rb").read())[:2] == (distinct, distinct)  # the converted file: each once
    shared = share_quantization(copies)
    assert tables(shared)[:2] == (distinct, distinct)
    assert len(copies) - len(shared) >= repeated
    reference, trial = tmp_path / "copies.tflite", tmp_path / "shared.tflite"
    reference.write_bytes(copies)
    trial.write_bytes(shared)
    ids = np.load(run / "data.npz")["valid"][:20]
    for kw in (dict(delegate="none"), dict(delegate="xnnpack"), dict(api="compiled")):
        a, b = StepModel(str(reference), manifest["states"], **kw), StepModel(str(trial), manifest["states"], **kw)
        for t in ids:
            np.testing.assert_array_equal(a.step(int(t)), b.step(int(t)))


def looked_up(path, tokens):
    """The rows the `step` signature's EMBEDDING_LOOKUP gives for `tokens`, read from the
    interpreter's own tensor."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    def lookup(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.EMBEDDING_LOOKUP
    (subgraph, tensor), = [(i, op.outputs[0]) for i, g in enumerate(model.subgraphs) for op in g.operators
                           if lookup(op) and g.tensors[op.outputs[0]].name.decode().startswith("step/")]
    import warnings
    with warnings.catch_warnings():  # it warns that keeping every tensor costs memory: a test wants that
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    run = interp.get_signature_runner("step")
    rows = []
    for t in tokens:
        run(token=np.array([t], np.int32))
        rows.append(interp.get_tensor(tensor, subgraph).reshape(-1).copy())
    return rows


def test_int4_keeps_an_embedding_of_odd_width_in_int8(tmp_path, capsys):
    """LiteRT's int4 EMBEDDING_LOOKUP reads a table of odd width wrongly: the quantizer packs the
    rows end to end, so every odd row starts mid-byte (a pruned point's 151-wide table gave
    perplexity 522 for 113). A 33-wide table stays int8 and every row it gives is the Keras row;
    every matrix beside it is int4, a layer of 33 inputs included."""
    words_corpus(tmp_path, seed=2, valid=40)
    out = tmp_path / "run"
    rundir.prepare(str(out))
    train(tiny_config(tmp_path, out, schedule="none", epochs=1, arch="lstm", embed=33, hidden=32,
                      tie_embeddings=False), log=lambda *a: None)
    from convert import int4
    int4._SAID.clear()  # said once a process: a conversion before this one may have said it
    capsys.readouterr()
    assert convert_main([str(out), "--quantize", "int4", "--sparse-encoding", "off"]) == 0
    said = capsys.readouterr().out
    assert "int4: the embedding table stays in int8: its width is odd" in said
    # layer 0's input kernel, 33 inputs, read by both signatures: one matrix XNNPACK will not run
    assert "int4: XNNPACK does not run an int4 matrix with an odd number of inputs, and 1 here have one" in said
    manifest = mf.load(str(out / "tflite"))
    path = mf.variant_path(manifest, "int4")
    kinds = {}
    for op, name, t in weights_by_op(path):
        kinds.setdefault(op, set()).add(t)
    assert kinds == {"EMBEDDING_LOOKUP": {"INT8"}, "FULLY_CONNECTED": {"INT4"}}, kinds
    table = load_model(str(out / "model")).get_layer("embedding").get_weights()[0]
    assert table.shape[1] == 33
    for t, row in zip((5, 6, 7), looked_up(path, (5, 6, 7))):
        assert np.abs(row - table[t]).max() <= 0.02 * np.abs(table[t]).max(), t  # int8: within 1/254


def test_int4_clips_each_channel_where_its_error_is_least(tmp_path):
    """The converter's int4 scales each channel by OCTAV's clip, not by its largest weight: the
    rows the file's lookup gives are nearer the Keras table, in mean squared error, than numpy's
    int4 of the same rows scaled by their largest weight, and the largest weights are clipped."""
    words_corpus(tmp_path, seed=3, valid=40)
    out = tmp_path / "run"
    rundir.prepare(str(out))
    train(tiny_config(tmp_path, out, schedule="none", epochs=1, arch="lstm", embed=64, hidden=32,
                      tie_embeddings=False), log=lambda *a: None)
    from keras_models.language_model import save_model
    model = load_model(str(out / "model"))
    weights = model.get_layer("output").get_weights()
    weights[0][:, 2] = 0  # a word's output channel of zeros: OCTAV's clip 0, a scale XNNPACK refuses, unless floored
    model.get_layer("output").set_weights(weights)
    save_model(model, str(out / "model"))
    assert convert_main([str(out), "--quantize", "int4", "--sparse-encoding", "off"]) == 0
    manifest = mf.load(str(out / "tflite"))
    assert manifest["variants"]["int4"]["xnnpack"]["ok"], manifest["variants"]["int4"]["xnnpack"]
    path = mf.variant_path(manifest, "int4")
    table = load_model(str(out / "model")).get_layer("embedding").get_weights()[0].astype(np.float64)
    tokens = list(range(4, 44))
    rows = np.array(looked_up(path, tokens), np.float64)
    want = table[tokens]
    scale = np.abs(want).max(1, keepdims=True) / 7  # min-max: the largest weight is level 7
    min_max = np.clip(np.round(want / scale), -8, 7) * scale
    octav, largest = ((rows - want) ** 2).sum(), ((min_max - want) ** 2).sum()
    assert octav < 0.95 * largest, (octav, largest)  # 0.905 here; min-max gives 1.0
    assert (np.abs(rows).max(1) < 0.99 * np.abs(want).max(1)).mean() > 0.9  # the largest weights clipped
