"""The sweep's plots as a reader sees them: bytes in MB on a log scale, labels
that overlap nothing, an axis one failed point cannot stretch, and the n-gram
series beside the points."""
import itertools
import json

import pytest

pytest.importorskip("matplotlib")
from knob import plots  # noqa: E402


def point(name, method, mb, ppl, ksr, r3, front=True):
    return dict(name=name, method=method, variant="int8", bytes=int(mb * 1e6), test_perplexity=ppl, test_ksr=ksr,
                test_r_at_3=r3, latency_ms=dict(median=mb / 10), keyboard_ms=dict(p90=mb / 5),
                frontier=dict(latency=front, keyboard=front, bytes=front))


def doc():
    return dict(points=[point("dense-100", "dense", 5.0, 398.0, 0.60, 0.33),
                        point("dense-100", "dense", 5.02, 398.1, 0.601, 0.331),  # the two dense files: one place
                        point("units-80", "units", 4.0, 400.0, 0.59, 0.32),
                        point("units-60", "units", 3.0, 402.0, 0.58, 0.31),
                        point("l0-20", "l0", 1.0, 787.0, 0.30, 0.10)],  # failed: far off (the smallest: on the frontier)
                device=dict(cpu="test"), timing=dict(threads=1), options=dict(base="runs/base"))


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    axes = {}

    def keep(fig, ax, path):
        ax.legend()  # as save() does
        fig.canvas.draw()
        axes[path.rsplit("/", 1)[-1]] = ax
        return path
    monkeypatch.setattr(plots, "save", keep)
    ngram = tmp_path / "ngram.json"
    ngram.write_text(json.dumps(dict(models=[dict(order=3, bytes=1.07e6, ksr=0.575, r_at_3=0.313),
                                             dict(order=3, bytes=3.6e6, ksr=0.588, r_at_3=0.324)])))
    plots.plot_all(doc(), str(tmp_path), str(ngram))
    yield axes
    plots.plt.close("all")


def test_bytes_are_megabytes_on_a_log_scale_in_every_plot(drawn):
    for name in ("frontier_bytes.png", "ksr_bytes.png", "r_at_3_bytes.png"):
        ax = drawn[name]
        assert ax.get_xscale() == "log" and "MB" in ax.get_xlabel(), name
        assert ax.get_xlim()[0] > 0.5 and ax.get_xlim()[1] < 10  # megabytes, not bytes


def test_labels_overlap_neither_each_other_nor_a_point(drawn):
    for name, ax in drawn.items():
        renderer = ax.figure.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().endswith("int8")]
        assert len(boxes) >= 3, name
        for a, b in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), (name, a, b)


def test_one_failed_point_does_not_stretch_the_axis_and_is_still_shown(drawn):
    ax = drawn["frontier_bytes.png"]
    low, high = ax.get_ylim()
    assert 397 < low and high < 410  # the 398-402 band fills the axis, not 787
    assert any(t.get_text() == "787" for t in ax.texts)  # the failed point, written at the edge
    low, high = drawn["ksr_bytes.png"].get_ylim()
    assert low > 0.5  # its KSR of 0.30 is off the axis too


def test_the_ngram_series_is_beside_the_points_on_the_keyboard_plots(drawn):
    for name in ("ksr_bytes.png", "r_at_3_bytes.png"):
        labels = [t.get_text() for t in drawn[name].get_legend().get_texts()]
        assert any(lab.startswith("KenLM KN3") for lab in labels), name
    assert not any(t.get_text().startswith("KenLM") for t in drawn["ksr_latency.png"].get_legend().get_texts())


def test_the_axis_keeps_every_value_that_is_not_far_off():
    assert plots.axis_limits([1.0, 2.0, 3.0, 4.0, 9.0])[1] > 9.0
    assert plots.axis_limits([1.0, 2.0, 30.0])[1] < 30.0
    assert plots.axis_limits([1.0, 2.0, 30.0], keep=[30.0])[1] > 30.0  # what must be seen is seen
