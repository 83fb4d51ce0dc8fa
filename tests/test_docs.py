"""The documentation holds together: every relative link and image in
README.md and docs/ exists (anchors included, as GitHub makes them), the
README's demo block is what the Makefile runs, and nothing points outside
the repository."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    with open(path, encoding="utf-8") as f:
        return {slug(line.lstrip("#")) for line in f if line.startswith("#")}


def test_slug_hand_worked():
    assert slug("`python -m pruning.train`") == "python--m-pruningtrain"
    assert slug("`edge_runtime/predict.py` — on the device") == "edge_runtimepredictpy--on-the-device"
    assert slug("The device runtime: the step against LiteRT's own work") == \
        "the-device-runtime-the-step-against-literts-own-work"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_image_exists(page):
    with open(page, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # code blocks hold no links
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(full):
            missing.append(target)
        elif anchor and full.endswith(".md") and anchor not in anchors(full):
            missing.append(target)
    assert not missing, f"{os.path.relpath(page, ROOT)}: {missing}"


def test_nothing_points_outside_the_repository():
    for page in PAGES:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for outside in ("DESIGN.md", "PAPERS.md", "../shared", "../.library"):
            assert outside not in text, (page, outside)


def test_the_readme_demo_block_is_what_make_demo_runs():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        make = f.read()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", make, re.M).group(1)
    variables = dict(re.findall(r"^(\w+) :?= (.*)$", make, re.M))
    expand = lambda s: re.sub(r"\$\((\w+)\)", lambda m: expand(variables[m.group(1)]), s)  # noqa: E731
    commands = [expand(line.strip()) for line in recipe.splitlines()]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = readme[readme.index("`make demo`\nruns"):]
    block = block[block.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    assert [line.strip() for line in block.splitlines() if line.strip()] == commands


def test_the_readme_is_short():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 250
