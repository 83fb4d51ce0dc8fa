"""predict.py on a converted tiny model, with numpy and LiteRT only."""
import ast
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_runtime import manifest as mf
from edge_runtime.predict import main
from edge_runtime.runner import StepModel
from edge_runtime.text import EOS
from edge_runtime.vocab import Vocab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALLOWED = {"numpy", "ai_edge_litert", "edge_runtime"}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_edge_runtime_imports_only_numpy_litert_and_stdlib():
    for name in os.listdir(os.path.join(ROOT, "edge_runtime")):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(ROOT, "edge_runtime", name)).read())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for mod in mods:
                top = mod.split(".")[0]
                assert top in ALLOWED or top in sys.stdlib_module_names, (name, mod)
    code = ("import sys, edge_runtime.predict, edge_runtime.bench; "
            "assert not any(m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_suggest_gives_the_models_top_words(tflite_dir, capsys):
    manifest = mf.load(str(tflite_dir))
    vocab = Vocab.load(mf.vocab_path(manifest))
    words = [w for w in vocab.tokens if w.isalpha()][:3]
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--variant", "float32",
                       "--text", " ".join(words) + " ", "--top-k", "3", "--json")  # a space: the next word
    assert code == 0
    got = json.loads(out)["suggestions"]
    model = StepModel(mf.variant_path(manifest, "float32"), manifest["states"])
    logp = model.step(vocab.eos_id)
    for w in words:
        logp = model.step(vocab.index[w])
    ranked = [vocab.tokens[i] for i in np.argsort(-logp) if vocab.tokens[i] not in ("<unk>", EOS, "N")]
    assert [g["word"].lower() for g in got] == ranked[:3]  # "i" is shown capitalised
    assert got[0]["probability"] == pytest.approx(float(np.exp(logp[vocab.index[ranked[0]]])), rel=1e-4)


def test_suggest_reports_unknown_words_and_takes_text_with_no_word(tflite_dir, capsys):
    code, out, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", "the zyzzyva ")
    assert code == 0 and "zyzzyva" in out and "<unk>" in out
    # nothing typed yet (or only punctuation) is a keyboard's commonest state: the sentence-start words
    code, empty, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", "")
    code2, commas, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", "  ,,, ")
    assert code == code2 == 0 and empty == commas and empty.strip()


def test_suggest_interactive_keeps_state(tflite_dir, monkeypatch, capsys):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO("the\ncat\n"))
    code, interactive, _ = run(capsys, "suggest", "--model", tflite_dir)
    code2, once, _ = run(capsys, "suggest", "--model", tflite_dir, "--text", "the cat")
    assert code == code2 == 0
    assert interactive.strip().splitlines()[-1] == once.strip()


def ptb_text(ids, vocab):
    """Token ids (<eos> first) back to a PTB-format text."""
    words = vocab.decode(ids[1:])
    lines, cur = [], []
    for w in words:
        if w == EOS:
            lines.append(" ".join(cur))
            cur = []
        else:
            cur.append(w)
    return "\n".join(lines) + "\n"


def test_eval_agrees_with_the_converter(tflite_dir, tmp_path, capsys):
    manifest = mf.load(str(tflite_dir))
    vocab = Vocab.load(mf.vocab_path(manifest))
    ids = np.load(os.path.join(os.path.dirname(tflite_dir), "data.npz"))["valid"]
    assert manifest["eval"]["tokens"] == len(ids) - 1, "convert the test model without --eval-tokens"
    f = tmp_path / "valid.txt"
    f.write_text(ptb_text(ids, vocab))
    code, out, _ = run(capsys, "eval", f, "--model", tflite_dir, "--variant", "float32", "--json")
    r = json.loads(out)
    assert code == 0 and r["tokens"] == len(ids) - 1
    v = manifest["variants"]["float32"]
    assert r["perplexity"] == pytest.approx(v["perplexity"], rel=1e-4)
    # and the Keras figure recorded at conversion, within 1%
    assert r["perplexity"] == pytest.approx(manifest["eval"]["keras_perplexity"], rel=0.01)


def test_eval_raw_text_matches_its_ptb_form(tflite_dir, tmp_path, capsys):
    raw = tmp_path / "raw.txt"
    raw.write_text("The cat sat on the mat. A dog ran to the big red house!\nWith 2 green doors, the end.\n")
    ptb = tmp_path / "ptb.txt"
    ptb.write_text("the cat sat on the mat\na dog ran to the big red house\nwith N green doors the end\n")
    _, a, _ = run(capsys, "eval", raw, "--format", "raw", "--model", tflite_dir, "--json")
    _, b, _ = run(capsys, "eval", ptb, "--model", tflite_dir, "--json")
    _, c, _ = run(capsys, "eval", raw, "--model", tflite_dir, "--json")  # auto: detected as raw
    ra, rb, rc = json.loads(a), json.loads(b), json.loads(c)
    assert ra["perplexity"] == pytest.approx(rb["perplexity"]) and ra["oov"] == rb["oov"] >= 1
    assert (rb["format"], rc["format"], rc["format_detected"]) == ("ptb", "raw", True)
    assert rc["perplexity"] == ra["perplexity"]


def test_eval_warns_when_much_of_the_text_is_outside_the_vocabulary(tflite_dir, tmp_path, capsys):
    vocab = Vocab.load(mf.vocab_path(mf.load(str(tflite_dir))))
    known = [w for w in vocab.tokens if w.isalpha()][:7]
    f = tmp_path / "odd.txt.gz"
    with gzip.open(f, "wt") as g:  # read directly, no gunzip
        g.write((" ".join(known + ["qqzx", "vvkw", "xxjq"]) + "\n") * 4)
    code, out, err = run(capsys, "eval", f, "--model", tflite_dir)
    assert code == 0 and "perplexity" in out and "12 words outside the vocabulary" in out
    assert err.startswith(f"warning: 30% of the words are outside the {len(vocab):,}-word vocabulary") \
        and "--format raw" in err and err.count("\n") == 1
    code, out, err = run(capsys, "eval", f, "--model", tflite_dir, "--format", "ptb")
    assert code == 0 and "ptb format;" in out and "--format" not in err  # chosen, not guessed: no hint


def test_eval_bad_input(tflite_dir, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the cat\nthe \xff dog\n")
    code, _, err = run(capsys, "eval", bad, "--model", tflite_dir)
    assert code == 2 and "bad.txt, line 2: not UTF-8" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "eval", bad, "--model", tflite_dir, "--errors", "replace")
    assert code == 0 and "perplexity" in out
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    code, _, err = run(capsys, "eval", empty, "--model", tflite_dir)
    assert code == 2 and "holds no words" in err
    code, _, err = run(capsys, "eval", tmp_path / "none.txt", "--model", tflite_dir)
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "eval", tmp_path, "--model", tflite_dir)
    assert code == 2 and err == f"error: {tmp_path} is a directory; give a text file to evaluate (the model goes in --model)\n"


def test_bench_writes_json_with_the_device(tflite_dir, capsys):
    code, out, _ = run(capsys, "bench", "--model", tflite_dir, "--variant", "float32", "--threads", "1",
                       "--steps", "1000", "--json")
    assert code == 0 and "| float32 |" in out
    files = os.listdir(os.path.join(os.path.dirname(tflite_dir), "bench"))
    r = json.load(open(os.path.join(os.path.dirname(tflite_dir), "bench", files[0])))
    lat = r["latency_ms"]
    assert r["steps"] == 1000 and 0 < lat["median"] <= lat["p90"] <= lat["p99"]
    assert r["delegate"] in ("xnnpack", "none") and r["threads"] == 1
    assert {"machine", "cpu", "cores", "os", "python", "litert"} <= set(r["device"])
    assert r["bytes"] == manifest_bytes(tflite_dir, "float32")


def manifest_bytes(tflite_dir, name):
    return mf.load(str(tflite_dir))["variants"][name]["bytes"]


def test_pick_within_budget_and_says_why_not(tflite_dir, capsys):
    manifest = mf.load(str(tflite_dir))
    sizes = {n: v["bytes"] for n, v in manifest["variants"].items()}
    small = min(sizes, key=sizes.get)
    code, out, _ = run(capsys, "pick", "--model", tflite_dir, "--max-bytes", sizes[small])
    assert code == 0 and out.startswith(f"{tflite_dir}:{small}:")
    code, out, err = run(capsys, "pick", "--model", tflite_dir, "--max-bytes", 10)
    assert code == 1 and "no variant meets the budget" in err and "bytes > 10" in err
    code, out, err = run(capsys, "pick", "--model", tflite_dir, "--max-latency-ms", 1e6, "--steps", "50",
                         "--warmup", "5")
    best = min(manifest["variants"], key=lambda n: manifest["variants"][n]["perplexity"])
    assert code == 0 and f":{best}:" in out and "keyboard p90" in out


def test_manifest_checks(tflite_dir, tmp_path, capsys):
    import shutil
    copy = tmp_path / "tflite"
    shutil.copytree(tflite_dir, copy)
    m = json.loads((copy / "manifest.json").read_text())
    with open(copy / m["variants"]["float32"]["file"], "ab") as f:
        f.write(b"tampered")
    code, _, err = run(capsys, "suggest", "--model", copy, "--variant", "float32", "--text", "the")
    assert code == 2 and "does not match the manifest's sha256" in err
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    code, _, err = run(capsys, "suggest", "--model", copy, "--text", "the")
    assert code == 2 and "format version 99" in err
    code, _, err = run(capsys, "suggest", "--model", tmp_path / "nothing", "--text", "the")
    assert code == 2 and "no manifest" in err


def test_litert_start_up_lines_are_hidden_unless_verbose(tflite_dir):
    cmd = [sys.executable, os.path.join(ROOT, "edge_runtime", "predict.py"), "suggest", "--model", str(tflite_dir),
           "--variant", "float32", "--text", "the"]
    for api in ("interpreter", "compiled"):
        quiet = subprocess.run(cmd + ["--api", api], capture_output=True, text=True, timeout=120)
        assert quiet.returncode == 0 and quiet.stdout.strip() and quiet.stderr == "", api
        loud = subprocess.run(cmd + ["--api", api, "--verbose"], capture_output=True, text=True, timeout=120)
        assert loud.returncode == 0 and loud.stdout == quiet.stdout and "INFO" in loud.stderr


def test_pick_uses_only_figures_of_this_file_measured_on_this_device(tflite_dir, tmp_path, capsys):
    import shutil
    from edge_runtime import device
    from edge_runtime.bench_cache import bench_file
    from edge_runtime.predict import parser
    copy = tmp_path / "tflite"
    shutil.copytree(tflite_dir, copy)
    manifest = mf.load(str(copy))
    names = [n for n, v in manifest["variants"].items() if v["status"] == "ok"]
    budget = ["--max-latency-ms", "1e-6", "--steps", "20", "--warmup", "2", "--json"]
    args = parser().parse_args(["pick", "--model", str(copy), *budget])
    stale = dict(latency_ms=dict(median=1e-9, p90=1e-9, p99=1e-9), energy_mj_per_token=None)
    other_device = dict(device.describe(), hostname="another-phone")
    for fake in (dict(stale, sha256="0" * 64, device=device.describe()),  # another file's figure
                 dict(stale, device=other_device)):  # this file, another device
        for n in names:
            f = bench_file(manifest, n, args.threads, args.delegate, args.api)
            os.makedirs(os.path.dirname(f), exist_ok=True)
            with open(f, "w") as fh:
                json.dump(dict(fake, sha256=fake.get("sha256", manifest["variants"][n]["sha256"])), fh)
        code, out, err = run(capsys, "pick", "--model", copy, *budget)
        assert code == 1 and err.count("measuring") == len(names)  # measured here, over budget
        assert json.loads(out)["picked"] is None
    code, _, _ = run(capsys, "bench", "--model", copy, "--variant", "all", "--steps", "20", "--warmup", "2",
                     "--idle-seconds", "0", "--json")
    assert code == 0
    code, out, err = run(capsys, "pick", "--model", copy, "--max-latency-ms", "1e6", "--json")
    picked = json.loads(out)
    assert code == 0 and "measuring" not in err  # this file's own figures, saved by bench
    assert picked["sha256"] == manifest["variants"][picked["picked"].rsplit(":", 1)[1]]["sha256"]


def suggested(capsys, *args):
    code, out, err = run(capsys, "suggest", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_tflite_path_is_that_variant_with_the_manifest_beside_it(tflite_dir, capsys):
    by_path = suggested(capsys, "--model", tflite_dir / "float32.tflite", "--text", "the ")
    by_name = suggested(capsys, "--model", tflite_dir, "--variant", "float32", "--text", "the ")
    assert by_path == by_name and by_path["variant"] == "float32"
    code, _, err = run(capsys, "suggest", "--model", tflite_dir / "float32.tflite", "--variant", "dynamic",
                       "--text", "the ")
    assert code == 2 and "is the float32 file, not --variant dynamic" in err and err.count("\n") == 1
    code, _, err = run(capsys, "suggest", "--model", tflite_dir / "nothing.tflite", "--text", "the ")
    assert code == 2 and "does not exist" in err and err.count("\n") == 1


def test_completion_and_the_block_list(tflite_dir, tmp_path, capsys):
    shown = suggested(capsys, "--model", tflite_dir, "--text", "the t")
    assert shown["typing"] == "t" and shown["suggestions"]
    assert all(s["word"].lower().startswith("t") for s in shown["suggestions"])
    first = shown["suggestions"][0]["word"]
    block = tmp_path / "block.txt"
    block.write_text(first.upper() + "\n")
    after = suggested(capsys, "--model", tflite_dir, "--text", "the t", "--block", block)
    assert first not in [s["word"] for s in after["suggestions"]]
    assert [s["word"] for s in after["suggestions"]][:2] == [s["word"] for s in shown["suggestions"]][1:3]
    nothing = suggested(capsys, "--model", tflite_dir, "--text", "the qqqzx")
    assert nothing["suggestions"] == []


def test_eval_reports_keyboard_metrics_and_na_without_a_known_word(tflite_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("<unk> <unk>\n<unk>\n")
    code, out, _ = run(capsys, "eval", text, "--model", tflite_dir)
    assert code == 0 and "keystroke savings n/a" in out and "completion recall after 1 letter n/a" in out
    code, out, _ = run(capsys, "eval", text, "--model", tflite_dir, "--json")
    r = json.loads(out)
    assert r["ksr"] is None and r["words_skipped"] == 3 and r["r_at_1"] == 0.0
