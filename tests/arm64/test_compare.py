"""The same-numbers check of `make test-arm64`, on hand-made outputs (the real
x86_64 and aarch64 ones are compared by the make target itself)."""
import copy

from tests.arm64.compare import compare


def outputs(ppl=100.0, shown=None):
    shown = shown or [[1, 2, 3]] * 200
    return dict(machine="x", model="m", variants={
        v: dict(perplexity=ppl, tokens=len(shown), shown=copy.deepcopy(shown)) for v in ("float32", "int8")})


def test_identical_outputs_pass():
    rows, problems = compare(outputs(), outputs())
    assert problems == [] and [r["same_shown"] for r in rows] == [1.0, 1.0]


def test_float_tolerance_is_tighter_than_int8s():
    arm = outputs()
    for v in arm["variants"].values():
        v["perplexity"] = 100.0 * (1 + 4e-3)  # within int8's 0.5%, far outside float32's 1e-4
    _, problems = compare(outputs(), arm)
    assert len(problems) == 1 and problems[0].startswith("float32: perplexity")


def test_two_changed_positions_in_two_hundred_fail():
    arm = outputs()
    arm["variants"]["int8"]["shown"][5] = [1, 3, 2]  # the order counts
    _, problems = compare(outputs(), arm)
    assert problems == []  # 199/200 = 99.5%
    arm["variants"]["int8"]["shown"][6] = [1, 2, 4]
    rows, problems = compare(outputs(), arm)
    assert rows[1]["same_shown"] == 0.99 and problems == []
    arm["variants"]["int8"]["shown"][7] = [9, 2, 3]
    _, problems = compare(outputs(), arm)
    assert problems == ["int8: the same three words at 98.50% of positions (under 99%)"]


def test_a_missing_variant_is_named():
    arm = outputs()
    del arm["variants"]["int8"]
    _, problems = compare(outputs(), arm)
    assert problems == ["int8: no aarch64 outputs"]
