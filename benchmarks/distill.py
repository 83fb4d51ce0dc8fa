"""Distillation on PTB: the teacher, a student taught by it, and the control
(the same student, the same epochs, no teacher).

    python benchmarks/distill.py [--epochs 6] [--only teacher,control,student]

Needs `make ptb` (runs/ptb/data). Each run is resumable: a run cut off goes on
from its checkpoint (`pruning.train --resume`), a finished one is kept. The
teacher is `--recipe teacher-2x400`; the students are `--recipe
zaremba-small` shortened to `--epochs` (the learning rate halved every epoch
after the first third), the student with `--teacher` (alpha 0.5, T 1, and the
teacher's top 32 words a token, the default when these runs were made). Then each is converted (dynamic int8) and
its test perplexity, R@3 and KSR measured by the device runtime over the
whole test split (`predict.py eval`), and the table printed; JSON in
benchmarks/results/distill_ptb.json.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge_runtime.files import atomic_write_text  # noqa: E402

DATA = "runs/ptb/data"
TEACHER = "runs/teacher/ptb-2x400"


# the students: Zaremba's small LSTM, and the same with its embedding tied to the output and every
# matrix at rank 64 from the start (about 1 MB in int8: below the smallest pruned n-gram)
STUDENTS = {"small": [], "small-tied-rank64": ["--tie", "--factorize", "lowrank", "--factorize-scope", "all",
                                               "--rank", "64"]}


def runs(epochs, student_name):
    student = ["--recipe", "zaremba-small", "--data-dir", DATA, "--epochs", str(epochs),
               "--decay-after", str(max(1, epochs // 3))] + STUDENTS[student_name]
    tag = "" if student_name == "small" else f"{student_name}-"
    return {"teacher": (TEACHER, ["--recipe", "teacher-2x400", "--data-dir", DATA]),
            "control": (f"runs/distill/control-{tag}{epochs}", student),
            "student": (f"runs/distill/student-{tag}{epochs}", student + ["--teacher", TEACHER, "--distill-top-k", "32"])}


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code != 0:
        sys.exit(f"error: {' '.join(cmd)} exited {code}")


def train(out, options):
    py = [sys.executable, "-m", "pruning.train"]
    report = os.path.join(ROOT, out, "train_report.json")
    if os.path.exists(report):
        return
    resume = os.path.exists(os.path.join(ROOT, out, "config.json"))
    run(py + (["--resume", "--out", out] if resume else options + ["--out", out]))


def measure(out):
    if not os.path.exists(os.path.join(ROOT, out, "tflite", "manifest.json")):
        run([sys.executable, "-m", "convert.to_tflite", out, "--quantize", "dynamic"])
    done = subprocess.run([sys.executable, "edge_runtime/predict.py", "eval", os.path.join(DATA, "ptb.test.txt"),
                           "--model", out, "--variant", "dynamic", "--json"], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"error: eval of {out}: {done.stderr.strip()}")
    r = json.loads(done.stdout)
    report = json.load(open(os.path.join(ROOT, out, "train_report.json")))
    return dict(run=out, keras_test_perplexity=report["test_perplexity"], test_perplexity=round(r["perplexity"], 3),
                r_at_1=round(r["r_at_1"], 4), r_at_3=round(r["r_at_3"], 4), ksr=r["ksr"],
                completion_recall_1=r["completion_recall_1"], tokens=r["tokens"], epochs=report["epochs_completed"],
                params=report["params_total"], wall_time_s=report["wall_time_s"],
                distillation=report.get("distillation"), history=report["history"])


def lumps():
    import glob
    import numpy as np
    from training.distill import lump
    print("| k | file MB | the teacher's mass outside its top k |")
    print("|---|---|---|")
    found = []
    for path in glob.glob(os.path.join(ROOT, TEACHER, "distill", "topk-*.npz")):
        with np.load(path) as z:
            probs = z["probs"]
        found.append((probs.shape[-1], os.path.getsize(path) / 2 ** 20, lump(probs)))
    for k, mb, mass in sorted(found):
        print(f"| {k} | {mb:,.0f} | {mass:.3f} |")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="the students' epochs (default %(default)s)")
    p.add_argument("--only", default="teacher,control,student", help="which runs (default %(default)s)")
    p.add_argument("--student", choices=sorted(STUDENTS), default="small",
                   help="the students' model (default %(default)s)")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "distill_ptb.json"))
    p.add_argument("--lumps", action="store_true",
                   help="only print, for each top-k file kept beside the teacher, k, its size and the lump: "
                        "the teacher's mean mass outside its top k")
    args = p.parse_args(argv)
    if args.lumps:
        return lumps()
    plan = runs(args.epochs, args.student)
    only = args.only.split(",")
    rows = {}
    for name in only:
        out, options = plan[name]
        train(out, options)
        rows[name if name == "teacher" else os.path.basename(out)] = measure(out)
    print("\n| run | epochs | params | Keras test ppl | device test ppl (dynamic) | R@1 | R@3 | KSR |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} ({r['run']}) | {r['epochs']} | {r['params']:,} | {r['keras_test_perplexity']:.2f} | "
              f"{r['test_perplexity']:.2f} | {r['r_at_1']:.3f} | {r['r_at_3']:.3f} | {r['ksr']:.3f} |")
    control, student = (rows.get(os.path.basename(plan[n][0])) for n in ("control", "student"))
    if control and student:
        c, s = control["test_perplexity"], student["test_perplexity"]
        print(f"\ndistillation: test perplexity {c:.2f} -> {s:.2f} ({100 * (s / c - 1):+.1f}%) at the same "
              f"{args.epochs} epochs")
    old = json.load(open(args.json)) if os.path.exists(args.json) else {}
    old.setdefault("rows", {}).update(rows)
    atomic_write_text(args.json, json.dumps(old, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
