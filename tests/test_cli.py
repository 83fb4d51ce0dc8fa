"""The command lines describe themselves: every option has a help line and a
choice option lists its choices; the package metadata builds cleanly."""
import argparse
import os
import tomllib

import pytest

from convert.to_tflite import parser as convert_parser
from edge_runtime.predict import parser as predict_parser
from pruning.report import parser as report_parser
from pruning.train import parser as train_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def all_parsers():
    yield "pruning.train", train_parser()
    yield "convert.to_tflite", convert_parser()
    yield "pruning.report", report_parser()
    top = predict_parser()
    yield "predict.py", top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert name in helped, f"predict.py {name} has no help line"
                yield f"predict.py {name}", sub


# option -> the choices its help must list (validated in code, so one-line errors stay ours)
CHOICES = {"--arch": "qrnn,lstm,hlstm", "--schedule": "none,constant,polynomial,m-by-n,l0,filter,grow-prune",
           "--prune-scope": "all,recurrent", "--optimizer": "adam,sgd", "--l0-penalty": "count,macs",
           "--rank-by": "random,norm,activation", "--recover": "none,rank-one",
           "--recipe": "zaremba-small,zaremba-medium,teacher-2x400", "--sparse-encoding": "auto,on,off",
           "--int8-io": "float,int8", "--variant": "float32,float16,dynamic,int8,int4,int4mixed", "--format": "auto,ptb,raw",
           "--state": "auto,io",
           "--delegate": None, "--errors": "strict,replace", "--api": "interpreter,compiled"}


@pytest.mark.parametrize("name,p", list(all_parsers()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_has_help_and_lists_its_choices(name, p):
    text = p.format_help()
    for action in p._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{name} {flag} has no help line"
        listed = CHOICES.get(flag)
        if listed:
            assert "{" + listed + "}" in text, f"{name} {flag} does not list {listed}"
        elif action.choices:
            assert "{" + ",".join(action.choices) + "}" in text


def test_package_metadata_has_nothing_setuptools_warns_about():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        meta = tomllib.load(f)
    assert isinstance(meta["project"]["license"], str)  # an SPDX string, not the deprecated table
    setuptools = meta["tool"]["setuptools"]
    for package in setuptools["packages"]:
        assert os.path.isdir(os.path.join(ROOT, *package.split("."))), package
    for package in setuptools["package-data"]:  # every folder that ships data is a declared package
        assert package in setuptools["packages"], package
    for top in ("keras_models", "training", "methods", "pruning", "convert", "knob", "edge_runtime"):
        for here, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if files and here != os.path.join(ROOT, top):
                assert os.path.relpath(here, ROOT).replace(os.sep, ".") in setuptools["packages"], here
