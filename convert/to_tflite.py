"""python -m convert.to_tflite RUN_DIR: LiteRT step models and their manifest.

Writes RUN_DIR/tflite/VARIANT.tflite for each precision, a copy of the
vocabulary and manifest.json (see edge_runtime/manifest.py), then prints a
table: variant, bytes, perplexity of the converted file on the run's
validation tokens, change vs. the Keras model on the same tokens. The tflite/
folder is built beside the old one and swapped in at the end; a variant that
fails to convert leaves no file and is reported with the converter's message.
Errors in the input: one line, exit status 2, nothing overwritten.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import shutil
import sys
import warnings

import numpy as np

RUN_FILES = ("config.json", "vocab.txt", "data.npz", "model/spec.json", "model/weights.h5")
TFLITE_DIR = "tflite"
SPARSE_MODES = ("auto", "on", "off")
STATE_MODES = ("auto", "io")
TWO_STAGE_MODES = ("auto", "on", "off")
# int8 keeps the state as inputs and outputs: its calibrator refuses get_state, a signature
# without inputs (benchmarks/results/stateful_ptb.json), and without it the outputs differed
# by up to 2.25 nats on PTB
INSIDE_PRECISIONS = ("float32", "float16", "dynamic", "int4", "int4mixed")
# the embedding as EMBEDDING_LOOKUP (convert/export.py's one_hot_embedding): the int4 quantizer needs
# it, and with it dynamic stores a tied table once. Untied, dynamic keeps GATHER: a per-row table
# costs 12 bytes of scales a word more (benchmarks/results/stored_once.json). int8 keeps GATHER:
# LiteRT's EMBEDDING_LOOKUP has no int8 output, so its tied table is stored twice
ONE_HOT_PRECISIONS = ("int4", "int4mixed")
ONE_HOT_TIED = ("dynamic",)


class ConvertError(ValueError):
    """Bad input to the converter; one-line message."""


def check_run_dir(run_dir):
    if not os.path.isdir(run_dir):
        raise ConvertError(f"run directory {run_dir} does not exist")
    above = os.path.dirname(os.path.abspath(run_dir))
    if os.path.basename(os.path.abspath(run_dir)) == TFLITE_DIR and os.path.exists(os.path.join(above, "config.json")):
        raise ConvertError(f"{run_dir} is the tflite/ folder a conversion wrote; give the run directory "
                           f"above it: {os.path.relpath(above)}")
    missing = [f for f in RUN_FILES if not os.path.exists(os.path.join(run_dir, f))]
    if missing:
        raise ConvertError(f"run directory {run_dir} is incomplete: it lacks {', '.join(missing)} "
                           "(did training finish?)")


def _first_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _versions():
    out = {}
    for pkg in ("edgelm", "tensorflow", "tf-keras", "ai-edge-litert"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _tensor_details(details):
    return {name: dict(shape=[int(x) for x in d["shape"]], dtype=d["dtype"].__name__,
                       quantization=dict(scale=float(d["quantization"][0]),
                                         zero_point=int(d["quantization"][1])))
            for name, d in sorted(details.items())}


def _try_xnnpack(path, states):
    from edge_runtime.runner import StepModel
    try:
        StepModel(path, states, delegate="xnnpack")  # runs one step: XNNPACK prepares there
        return dict(ok=True, error=None)
    except Exception as e:  # the delegate's failure to prepare, reported, not raised
        return dict(ok=False, error=_first_line(e))


def _convert(saved_dir, precision, sparse, feeds, int8_io, signatures, inside=False):
    """Bytes of one conversion, or ConvertError with the converter's own message."""
    from convert.variants import make_converter
    from edge_runtime.quiet import captured_stderr
    lines = []
    try:
        with captured_stderr(lines), warnings.catch_warnings():
            # full-int8 calibration runs TensorFlow's own tf.lite.Interpreter, which warns that it
            # is deprecated; edgelm runs its files with ai-edge-litert
            warnings.filterwarnings("ignore", "\\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
            data = make_converter(saved_dir, precision, sparse, feeds, int8_io, signatures, inside).convert()
            if precision in ("int4", "int4mixed"):
                from convert import int4
                data = int4.quantize(data, precision)
            from convert.flatbuffer import share_quantization
            return share_quantization(data)  # each signature's copy of the scales, written once
    except Exception as e:
        errors = [l.strip() for l in lines if "error:" in l]
        raise ConvertError(errors[0] if errors else _first_line(e)) from None


def _same_outputs(reference, path, states, ids):
    """None if `path` gives the log-probabilities `reference` gives on `ids`
    under each delegate the reference loads with (none; XNNPACK), else why
    not. Sparse encoding is meant to be lossless; LiteRT does not always keep
    that promise (a sparse float16 file gave NaN under XNNPACK here). A file
    that does not load without a delegate, which every valid file does, is
    not the same model; XNNPACK failing to prepare is recorded separately."""
    from edge_runtime.runner import StepModel
    for delegate in ("none", "xnnpack"):
        try:
            ref = StepModel(reference, states, delegate=delegate)
            expected = [ref.step(int(t)) for t in ids]
        except Exception:
            continue  # the reference itself does not run here
        try:
            model = StepModel(path, states, delegate=delegate)
            got = [model.step(int(t)) for t in ids]
        except Exception as e:
            if delegate == "none":
                return f"it does not run: {_first_line(e)}"
            continue
        for x, y in zip(expected, got):
            if not (np.isfinite(y).all() and np.allclose(x, y, rtol=1e-4, atol=1e-4)):
                return f"its outputs differ from the dense file's (delegate {delegate})"
    return None


def _state_inside(path, inside, precision, states, check_ids):
    """(kept, note): with `inside` ((SavedModel dir, signatures) of the state kept
    in variables), convert it and keep it in place of the file at `path` only if
    it gives the same outputs on `check_ids`."""
    from edge_runtime.files import atomic_write_bytes
    if precision not in INSIDE_PRECISIONS:
        return False, "int8 keeps the state as inputs and outputs (its calibrator refuses the file with it inside)"
    if inside is None:
        return False, None
    trial = path + ".inside"
    try:
        atomic_write_bytes(trial, _convert(inside[0], precision, False, None, None, inside[1], inside=True))
        differs = _same_outputs(path, trial, states, check_ids)
        if not differs:
            os.replace(trial, path)
            return True, None
        return False, f"kept as inputs and outputs: with it inside, {differs}"
    except ConvertError as e:
        return False, f"kept as inputs and outputs: with it inside, conversion failed: {e}"
    finally:
        if os.path.exists(trial):
            os.unlink(trial)


def convert_variant(saved_dir, precision, sparse_mode, feeds, int8_io, out_dir, states, check_ids, signatures,
                    inside=None):
    """Convert one precision into out_dir; returns (manifest entry, path or None).

    The dense file is always made. With `inside` (the SavedModel with the
    state in variables, and its signatures) that one is made too and kept if
    it gives the same outputs on `check_ids` (see `_state_inside`). With
    sparse encoding `auto` or `on` the sparse one too, checked against the
    dense one on `check_ids`. `auto` keeps the sparse file only if it is
    smaller and gives the same outputs; `on` fails the variant if it cannot
    be made or is not the same model.
    """
    from edge_runtime.files import atomic_write_bytes
    from edge_runtime.manifest import sha256_file
    from edge_runtime.runner import StepModel
    base = dict(quantization=precision, int8_io=int8_io if precision == "int8" else None)
    path = os.path.join(out_dir, f"{precision}.tflite")
    try:
        atomic_write_bytes(path, _convert(saved_dir, precision, False, feeds, int8_io, signatures))
    except ConvertError as e:
        return dict(base, status="failed", error=str(e)), None
    kept, state_note = _state_inside(path, inside, precision, states, check_ids)
    if kept:
        saved_dir, signatures = inside
    base.update(state="inside" if kept else "io", state_note=state_note)
    sparse, sparse_note = False, None
    if sparse_mode != "off":
        trial = path + ".sparse"
        try:
            atomic_write_bytes(trial, _convert(saved_dir, precision, True, feeds, int8_io, signatures, kept))
            differs = _same_outputs(path, trial, states, check_ids)
            if differs:
                sparse_note = f"the sparse file is not the same model: {differs}"
            elif sparse_mode == "auto" and os.path.getsize(trial) >= os.path.getsize(path):
                sparse_note = "not smaller than the dense file"
            else:
                sparse = True
                os.replace(trial, path)
        except ConvertError as e:
            sparse_note = f"sparse conversion failed: {e}"
        if os.path.exists(trial):
            os.unlink(trial)
        if sparse_mode == "on" and not sparse:
            os.unlink(path)
            return dict(base, status="failed", error=f"--sparse-encoding on: {sparse_note}"), None
    runner = StepModel(path, states, delegate="none")
    entry = dict(base, status="ok", file=os.path.basename(path), sha256=sha256_file(path),
                 bytes=os.path.getsize(path), sparse_encoding=sparse, sparse_note=sparse_note,
                 xnnpack=_try_xnnpack(path, states),
                 inputs=_tensor_details(runner.inputs), outputs=_tensor_details(runner.outputs))
    return entry, path


def convert_run(run_dir, precisions, sparse_mode="auto", int8_io="float", eval_tokens=None,
                force=False, log=print, top_k=None, state="auto", two_stage="off"):
    """Convert a run directory; returns the manifest dict. `two_stage`: how the suggest
    signature ranks (convert/two_stage.py): "auto", with a two-stage output layer where one
    shows the full layer's words and is estimated to cost at most 90% of it; "on", with the
    cheapest one that shows them; "off", with the full layer."""
    from convert.variants import PRECISIONS
    check_run_dir(run_dir)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ConvertError(f"unknown precision {', '.join(bad)}")
    if state not in STATE_MODES:
        raise ConvertError(f"--state must be one of {', '.join(STATE_MODES)}")
    if two_stage not in TWO_STAGE_MODES:
        raise ConvertError(f"--two-stage must be one of {', '.join(TWO_STAGE_MODES)}")
    final = os.path.join(run_dir, TFLITE_DIR)
    if os.path.exists(final) and not force:
        raise ConvertError(f"{final} already exists; use --force to replace it")

    from convert.export import (SIGNATURE, SUGGEST, TOP_K, one_hot_embedding, save_step_model, state_layout,
                                step_function)
    from edge_runtime.metrics import check_top_k
    from convert.variants import calibration_feeds
    from edge_runtime.files import atomic_write_text, make_temp_dir, replace_dir
    from edge_runtime.manifest import FILE, FORMAT_VERSION, sha256_file
    from edge_runtime.runner import StepModel, evaluate_ids, suggest_agreement
    from edge_runtime.vocab import Vocab
    from keras_models.evaluate import evaluate
    from keras_models.language_model import build_step_model, load_model

    try:
        model = load_model(os.path.join(run_dir, "model"))
        vocab = Vocab.load(os.path.join(run_dir, "vocab.txt"))
        with np.load(os.path.join(run_dir, "data.npz")) as z:
            valid, windows = z["valid"], z["calibration"]
    except Exception as e:
        raise ConvertError(f"cannot load the run in {run_dir}: {_first_line(e)}") from None
    if model.spec["vocab_size"] != len(vocab):
        raise ConvertError(f"{run_dir}: the model has {model.spec['vocab_size']} outputs "
                           f"but vocab.txt has {len(vocab)} tokens")
    top_k = TOP_K if top_k is None else top_k
    try:
        if top_k:  # 0: no suggest signature
            check_top_k(top_k, len(vocab), vocab.never_suggested)
    except ValueError as e:
        raise ConvertError(str(e)) from None
    signatures = (SIGNATURE, SUGGEST) if top_k else (SIGNATURE,)
    ids = valid[: eval_tokens + 1] if eval_tokens else valid
    keras_eval = evaluate(model, ids, vocab.never_suggested)
    log(f"Keras model: perplexity {keras_eval['perplexity']:.3f} on {keras_eval['tokens']} "
        "validation tokens")

    choice = None
    if top_k and two_stage != "off":
        from convert.two_stage import Head, choose
        choice = choose(model, valid, vocab.never_suggested, top_k, two_stage)
        log(f"two-stage suggest: rank {choice['rank']}, {choice['candidates']} candidates, costing about "
            f"{choice['cost']:,} of the full layer's {choice['full_macs']:,} multiply-adds, its words at "
            f"{choice['agreement']:.2%} of {choice['tokens']} validation positions" if choice["chosen"]
            else f"two-stage suggest: not used ({choice['reason']})")
    model_spec, weights = model.spec, model.get_weights()
    step = build_step_model(model_spec, weights)
    states = state_layout(step)
    work = make_temp_dir(final)
    try:
        saved_models = {}

        def saved_model(embedding, kind):
            """(folder, signatures) of the SavedModel for the embedding's form and
            the state's place, written the first time a precision asks for it."""
            if (embedding, kind) not in saved_models:
                folder = os.path.join(work, f".saved-{embedding}-{kind}")
                net = step if embedding == "gather" else one_hot_embedding(
                    build_step_model(model_spec, weights))
                head = Head(net, choice) if choice and choice["chosen"] else None
                saved_models[embedding, kind] = (folder, save_step_model(
                    net, folder, vocab.unk_id, vocab.never_suggested, top_k, kind, head))
            return saved_models[embedding, kind]
        feeds = (calibration_feeds(step_function(step, vocab.unk_id), states, windows)
                 if "int8" in precisions else None)
        shutil.copyfile(os.path.join(run_dir, "vocab.txt"), os.path.join(work, "vocab.txt"))
        variants = {}
        for precision in precisions:
            log(f"converting {precision} ...")
            one_hot = precision in ONE_HOT_PRECISIONS or (precision in ONE_HOT_TIED and model_spec["tie_embeddings"])
            embedding = "one-hot" if one_hot else "gather"
            inside = (saved_model(embedding, "inside")
                      if state == "auto" and precision in INSIDE_PRECISIONS else None)
            entry, path = convert_variant(saved_model(embedding, "io")[0], precision, sparse_mode, feeds,
                                          int8_io, work, states, ids[:64], signatures, inside)
            if path:
                delegate = "xnnpack" if entry["xnnpack"]["ok"] else "none"
                r = evaluate_ids(StepModel(path, states, delegate=delegate), ids, vocab.never_suggested)
                entry.update(perplexity=round(r["perplexity"], 4), r_at_3=round(r["r_at_3"], 4),
                             change_vs_keras=round(r["perplexity"] / keras_eval["perplexity"] - 1, 5),
                             eval_delegate=delegate)
                if choice and choice["chosen"]:  # the whole layer's suggest is step's ranking: nothing to check
                    entry["suggest_agreement"] = round(suggest_agreement(
                        StepModel(path, states, delegate=delegate), ids, vocab.never_suggested), 5)
            variants[precision] = entry
        for folder, _ in saved_models.values():
            shutil.rmtree(folder)
        learning = tune_learning(variants, work, states, ids, vocab, log)
        manifest = dict(
            format_version=FORMAT_VERSION,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            run=os.path.abspath(run_dir), architecture=model.spec,
            vocab=dict(file="vocab.txt", sha256=sha256_file(os.path.join(work, "vocab.txt")),
                       size=len(vocab)),
            signature="step", token_input="token", output="log_probs", states=states,
            suggest=dict(signature=SUGGEST, k=top_k, ids="ids", scores="logits",
                         never_suggested=list(vocab.never_suggested),
                         two_stage={k: v for k, v in (choice or dict(chosen=False, reason="--two-stage off")).items()
                                    if k not in ("preview", "project")}) if top_k else None,
            eval=dict(split="valid", tokens=keras_eval["tokens"],
                      keras_perplexity=round(keras_eval["perplexity"], 4),
                      keras_r_at_3=round(keras_eval["r_at_3"], 4)),
            tools=_versions(), variants=variants, learning=learning)
        atomic_write_text(os.path.join(work, FILE), json.dumps(manifest, indent=2) + "\n")
        replace_dir(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def tune_learning(variants, folder, states, ids, vocab, log):
    """The user-history cache's lambda and half-life (edge_runtime/cache.py), tuned on the
    validation tokens typed in order through the most exact file that converted; None if none did."""
    from edge_runtime.cache import tune
    from edge_runtime.runner import StepModel
    name = next((n for n in ("float32", "dynamic", "float16", "int8", "int4")
                 if variants.get(n, {}).get("status") == "ok"), None)
    if name is None:
        return None
    entry = variants[name]
    model = StepModel(os.path.join(folder, entry["file"]), states, delegate="xnnpack" if entry["xnnpack"]["ok"] else "none")
    try:
        r = tune(model, ids, vocab)
    except ValueError:
        return None
    log(f"the user's cache: lambda {r['lambda']}, half-life {r['half_life'] or 'none'}: validation perplexity "
        f"{r['perplexity_without']:.2f} -> {r['perplexity_with']:.2f} typed in order ({r['tokens']} tokens, {name})")
    return dict(r, tuned_on="valid", file=name)


def print_table(manifest, out=None):
    out = out or sys.stdout  # looked up now: callers may have redirected it
    keras_ppl = manifest["eval"]["keras_perplexity"]
    print(f"\nperplexity on {manifest['eval']['tokens']} validation tokens; Keras: {keras_ppl:.3f}", file=out)
    print("| variant | bytes | sparse | state | XNNPACK | perplexity | vs. Keras |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for name, v in manifest["variants"].items():
        if v["status"] != "ok":
            print(f"| {name} | failed: {v['error']} | | | | | |", file=out)
            continue
        xnn = "yes" if v["xnnpack"]["ok"] else "no"
        sparse = "yes" if v["sparse_encoding"] else "no"
        print(f"| {name} | {v['bytes']:,} | {sparse} | {v.get('state', 'io')} | {xnn} | "
              f"{v['perplexity']:.3f} | {100 * v['change_vs_keras']:+.2f}% |", file=out)


def parser():
    p = argparse.ArgumentParser(prog="python -m convert.to_tflite", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory written by python -m pruning.train")
    p.add_argument("--quantize", default="all", metavar="{all,float32,float16,dynamic,int8,int4,int4mixed[,...]}",
                   help="the precisions, a comma list, or all: the first five (int4 where ai-edge-quantizer is "
                        "installed); int4mixed (int4 embedding and recurrent weights, int8 output layer) only "
                        "by name (default %(default)s)")
    p.add_argument("--sparse-encoding", default="auto", metavar="{" + ",".join(SPARSE_MODES) + "}",
                   help="LiteRT's sparse format: auto (where it shrinks the file and the outputs stay "
                        "the same), on (required), off (default %(default)s)")
    p.add_argument("--int8-io", default="float", metavar="{float,int8}",
                   help="int8 variant: float or int8 state/log-prob inputs and outputs (default %(default)s)")
    p.add_argument("--state", default="auto", metavar="{" + ",".join(STATE_MODES) + "}",
                   help="auto: the recurrent state kept inside the file, in variables, where that gives "
                        "the same outputs (all but int8); io: state inputs and outputs "
                        "(default %(default)s)")
    p.add_argument("--top-k", type=int, default=3,
                   help="words the suggest signature returns, fixed in the file; 0: no suggest signature "
                        "(smaller int8 files) (default %(default)s)")
    p.add_argument("--two-stage", default="off", metavar="{" + ",".join(TWO_STAGE_MODES) + "}",
                   help="how suggest ranks: a low-rank preview of every word, then the best candidates "
                        "exactly, at the rank and candidate count that show the full layer's words at 99.5%% "
                        "of the validation positions; auto: where that is estimated to cost at most 90%% of "
                        "the full output layer; on: always; off: the full layer. On this project's CPU it "
                        "never pays (docs/benchmarks.md) (default %(default)s)")
    p.add_argument("--eval-tokens", type=int, default=None,
                   help="measure perplexity on the first N validation tokens (default: all of them)")
    p.add_argument("--force", action="store_true", help="replace an existing tflite/ folder")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    from edge_runtime import quiet
    quiet.configure(args.verbose)
    try:
        from convert.variants import available, parse_precisions
        precisions = parse_precisions(args.quantize)
        if args.quantize.strip() == "all" and not available("int4"):
            print("note: no int4 file: it needs ai-edge-quantizer (pip install -e '.[quantizer]')", file=sys.stderr)
        if args.sparse_encoding not in SPARSE_MODES:
            raise ConvertError(f"--sparse-encoding must be one of {', '.join(SPARSE_MODES)}")
        if args.int8_io not in ("float", "int8"):
            raise ConvertError("--int8-io must be float or int8")
        if args.eval_tokens is not None and args.eval_tokens < 1:
            raise ConvertError("--eval-tokens must be at least 1")
        manifest = convert_run(args.run_dir, precisions, args.sparse_encoding, args.int8_io,
                               args.eval_tokens, args.force, top_k=args.top_k, state=args.state,
                               two_stage=args.two_stage)
    except (ConvertError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # convert_run has removed its work folder
        print(f"interrupted: nothing written; {os.path.join(args.run_dir, TFLITE_DIR)} is as it was",
              file=sys.stderr)
        return 130
    print_table(manifest)
    failed = [n for n, v in manifest["variants"].items() if v["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
