"""The packages' imports, read from the source: each package imports only the
layers below it, and no module imports itself back through others."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# package -> the project packages it may import (lower layers)
BELOW = {
    "edge_runtime": set(),
    "keras_models": {"edge_runtime"},
    "training": {"keras_models", "edge_runtime"},
    "methods": {"training", "keras_models", "edge_runtime"},
    "convert": {"keras_models", "edge_runtime"},
    "pruning": {"methods", "training", "keras_models", "edge_runtime"},
    "knob": {"training", "edge_runtime"},  # it runs training and conversion as commands, not imports
}
# the user's commands, where users know them: the top layer, imported by nothing
COMMANDS = {"pruning.train": set(BELOW), "pruning.sweep": set(BELOW), "pruning.report": set(BELOW)}


def modules():
    for package in BELOW:
        for name in sorted(os.listdir(os.path.join(ROOT, package))):
            if name.endswith(".py"):
                yield f"{package}.{name[:-3]}".removesuffix(".__init__"), os.path.join(ROOT, package, name)


def imports(path):
    """Every project module a file imports, at the top or inside a function."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in BELOW}


GRAPH = {name: imports(path) for name, path in modules()}


def test_every_arrow_points_down():
    wrong = []
    for name, deps in GRAPH.items():
        package = name.split(".")[0]
        allowed = COMMANDS.get(name, BELOW[package]) | {package}
        wrong += [f"{name} -> {d}" for d in deps if d.split(".")[0] not in allowed]
    assert not wrong, wrong


def test_nothing_imports_a_command():
    wrong = [f"{name} -> {d}" for name, deps in GRAPH.items() for d in deps if d in COMMANDS]
    assert not wrong, wrong


def test_no_module_imports_itself_back():
    edges = {n: {d for d in deps if d in GRAPH and d != n} for n, deps in GRAPH.items()}
    state = {}

    def visit(n, path):
        state[n] = "open"
        for d in edges[n]:
            if state.get(d) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[n] = "done"
    for n in edges:
        if n not in state:
            visit(n, [n])



def test_the_train_command_checks_every_method_before_tensorflow_loads():
    # MultiWorkerMirroredStrategy must be named before TensorFlow's first op, and bad input is answered at once
    import subprocess
    import sys
    code = ("import sys\nfrom pruning import train\n"
            "for bad in (['--schedule', 'l0', '--l0-lambda', '-1'], ['--schedule', 'filter', '--target-units', '2'],"
            " ['--schedule', 'grow-prune', '--gp-cycles', '0'], ['--factorize', 'tt', '--tt-rank', '0'],"
            " ['--prune-scope', 'x']):\n"
            "    assert train.main(bad + ['--out', 'never']) == 2\n"
            "assert not any(m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras') for m in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
