"""benchmarks/ngram.py's recovery table: each --versus pair's perplexities and the share
of the control's gap to the teacher that the student wins back, hand-worked."""
import pytest

from benchmarks import ngram


def doc():
    return dict(neural=[dict(point="control:dynamic", test_perplexity=120.0),
                        dict(point="student:dynamic", test_perplexity=105.0),
                        dict(point="teacher:dynamic", test_perplexity=90.0)],
                versus=[dict(a="control:dynamic", b="student:dynamic")])


def test_the_student_wins_back_half_of_the_controls_gap():
    lines = ngram.recovery_table(doc(), "teacher:dynamic").splitlines()
    assert lines[0].endswith("recovered of a's loss to teacher:dynamic (90.00) |")
    assert lines[2] == "| control:dynamic | student:dynamic | 120.00 | 105.00 | 50% |"
    assert ngram.recovery_table(doc()).splitlines()[2] == "| control:dynamic | student:dynamic | 120.00 | 105.00 |"


def test_a_teacher_not_in_the_results_is_a_one_line_error():
    with pytest.raises(SystemExit, match="--teacher nobody:dynamic: not a file of this results JSON"):
        ngram.recovery_table(doc(), "nobody:dynamic")


def test_the_plots_label_the_files_no_smaller_file_beats():
    rows = [dict(point="a", bytes=3, r_at_3=0.30), dict(point="b", bytes=1, r_at_3=0.25),
            dict(point="c", bytes=2, r_at_3=0.24), dict(point="d", bytes=2, r_at_3=0.28),
            dict(point="e", bytes=4, r_at_3=0.30), dict(point="f", bytes=5, r_at_3=0.31)]
    # c is beaten by the smaller b; e ties a at more bytes
    assert [r["point"] for r in ngram.best_for_size(rows, "r_at_3")] == ["b", "d", "a", "f"]


def test_the_same_point_of_two_sweeps_is_named_with_its_sweep():
    names = ngram.run_names(["runs/a/points/l0-50/tflite", "runs/b/points/l0-50/tflite/", "runs/c/l0-50/tflite",
                             "runs/teacher/tflite"])
    assert names == ["a/l0-50", "b/l0-50", "c/l0-50", "teacher"]
