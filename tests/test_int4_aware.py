"""--int4-aware (training/int4_aware.py): the steps see the weights the int4 file will hold."""
import numpy as np
import pytest

from convert.to_tflite import main as convert_main
from edge_runtime import manifest as mf
from keras_models.backend import keras, tf
from keras_models.language_model import build_language_model, load_model, make_spec, zero_states
from pruning.train import main as train_main
from pruning.trainer import train
from tests.conftest import tiny_config
from tests.test_convert import words_corpus
from training import int4_aware, steps


def int4_matrices(path):
    """{tensor name: dequantized float matrix} of every int4 tensor in the .tflite at `path`, read
    from the flatbuffer: two weights a byte, the low nibble first, one scale per row."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(open(path, "rb").read(), 0)
    out = {}
    for g in model.subgraphs:
        for t in g.tensors:
            if t.type != schema.TensorType.INT4:
                continue
            raw = np.frombuffer(bytes(model.buffers[t.buffer].data), np.uint8)
            levels = np.stack([raw & 15, raw >> 4], -1).reshape(-1).astype(np.int16)
            levels = np.where(levels > 7, levels - 16, levels)
            shape = [int(s) for s in t.shape]
            assert t.quantization.quantizedDimension == 0
            scale = np.asarray(t.quantization.scale, np.float64).reshape(-1, 1)
            out[t.name.decode()] = levels[: int(np.prod(shape))].reshape(shape) * scale
    return out


def test_rounding_is_the_quantizers():
    """The clip and the levels are ai-edge-quantizer's own, computed by its numpy code: a heavy-
    tailed matrix, per column and per row, with a channel of zeros (its clip floored at 1e-9)."""
    from ai_edge_quantizer.algorithms.uniform_quantize import octav
    rng = np.random.default_rng(0)
    for shape, axis in (((300, 64), 0), ((500, 48), 1)):
        w = (rng.standard_t(3, size=shape) * 0.05).astype(np.float32)
        if axis == 0:
            w[:, 5] = 0
        else:
            w[5] = 0
        clip = np.maximum(octav._guess_clipping_with_octav(w, 4, (axis,), 10, 3.0), 1e-9)
        np.testing.assert_allclose(int4_aware.octav_clip(tf.constant(w), (axis,)).numpy(), clip, rtol=1e-5)
        bound = np.maximum(np.abs(w).max(axis, keepdims=True), 1e-9)
        scale = np.minimum(bound, clip) / 7
        want = np.clip(np.rint(w / scale), -8, 7) * scale
        got = int4_aware.rounded(tf.constant(w), (axis,)).numpy()
        np.testing.assert_allclose(got, want, atol=1e-7)
        assert (np.abs(got).max(axis) < np.abs(w).max(axis) - 1e-6).any()  # some channels clipped: OCTAV's, not min-max


@pytest.mark.parametrize("arch, factored, count", [("lstm", False, 5), ("lstm", True, 9), ("qrnn", False, 3)])
def test_the_int4_file_holds_the_weights_the_steps_saw(tmp_path, arch, factored, count):
    """Trained with --int4-aware, the model's matrices rounded as the steps rounded them are, to
    float precision, the int4 file's matrices (each its own tensor there, transposed where Keras
    keeps [in, out]): a tied LSTM, plain or with every matrix at rank 8, and a tied QRNN."""
    words_corpus(tmp_path, seed=2, valid=30)
    out = tmp_path / "run"
    extra = dict(factorize="lowrank", factorize_scope="all", rank=8) if factored else {}
    report = train(tiny_config(tmp_path, out, schedule="none", epochs=1, arch=arch, embed=32, hidden=32,
                               int4_aware=True, **extra), log=lambda *a: None)
    assert report["int4_rounded"]["test_perplexity"] > 1
    assert convert_main([str(out), "--quantize", "int4", "--sparse-encoding", "off"]) == 0
    held = list(int4_matrices(mf.variant_path(mf.load(str(out / "tflite")), "int4")).values())
    model = load_model(str(out / "model"))
    pairs = int4_aware.matrices(model)
    assert len(pairs) == count  # the table (A), 4 LSTM matrices (8 factors) or 2 QRNN kernels; B read both ways
    for v, axes in pairs:
        r = int4_aware.rounded(v, axes).numpy().astype(np.float64)
        want = r if axes == (1,) else r.T
        gaps = [np.abs(m - want).max() for m in held if m.shape == want.shape]
        assert gaps and min(gaps) < 1e-6, (v.name, gaps)


def test_a_step_applies_the_gradient_at_the_rounded_weights_to_the_float_ones():
    """One SGD step made in steps.int4_aware(): every weight ends at w - lr g, g the gradient of the
    loss at the rounded matrices (the straight-through estimator), against the same gradient taken
    by hand on a copy of the model whose matrices are set to their rounded values."""
    keras.utils.set_random_seed(0)
    spec = make_spec("lstm", 50, 16, 16, 2, 0.0, True, 1, 0.0)
    model = build_language_model(**spec)
    x = np.random.default_rng(1).integers(0, 50, (4, 6)).astype(np.int32)
    y = np.random.default_rng(2).integers(0, 50, (4, 6)).astype(np.int32)
    states = zero_states(model, 4)
    start = [v.numpy() for v in model.trainable_variables]
    start_all = model.get_weights()

    reference = build_language_model(**spec)
    reference.set_weights(model.get_weights())
    for v, axes in int4_aware.matrices(reference):
        v.assign(int4_aware.rounded(v, axes))
    with tf.GradientTape() as tape:
        loss, _ = steps.loss_terms(reference([x] + states, training=True)[0], y)
    grads = tape.gradient(loss, reference.trainable_variables)

    lr = 0.5
    opt = keras.optimizers.SGD(lr)
    opt.build(model.trainable_variables)
    with steps.int4_aware():
        step = steps.make_train_step(model, opt)
    step(x, y, states)
    rounded = {id(v) for v, _ in int4_aware.matrices(model)}
    assert len(rounded) == 5
    for v, w0, g in zip(model.trainable_variables, start, grads):
        np.testing.assert_allclose(v.numpy(), w0 - lr * g.numpy(), atol=2e-6, err_msg=v.name)
    # the float weights' own gradient differs: the test tells the two apart
    plain = build_language_model(**spec)
    plain.set_weights(start_all)
    with tf.GradientTape() as tape:
        float_loss, _ = steps.loss_terms(plain([x] + states, training=True)[0], y)
    float_grads = tape.gradient(float_loss, plain.trainable_variables)
    assert max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(grads, float_grads)) > 1e-4


@pytest.mark.parametrize("args, said", [
    (["--schedule", "polynomial"], "--int4-aware rounds the weights of a phase that only updates them"),
    (["--schedule", "none", "--arch", "hlstm"], "--int4-aware supports lstm, qrnn, not hlstm"),
    (["--schedule", "none", "--factorize", "tt", "--tt-rank", "4"], "not tensor-train cores"),
    (["--schedule", "none", "--recover", "rank-one"], "does not round the rank-one updates"),
    (["--schedule", "none", "--strategy", "mirrored"], "trains on one device"),
])
def test_int4_aware_refuses_what_it_cannot_round(tmp_path, capsys, args, said):
    assert train_main(["--int4-aware", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "run").exists()
