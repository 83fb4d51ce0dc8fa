"""`tflite/manifest.json`: what the converter made, read on the device.

Format version 1:
    format_version, created, architecture (the model spec), vocab
    {file, sha256}, signature ("step"), token_input ("token"), output
    ("log_probs"), states [{input, output, shape, dtype}], suggest {signature
    ("suggest"), k, ids ("ids"), scores ("logits": what the ids are ranked
    by), never_suggested, two_stage {chosen, mode, reason | rank,
    candidates, agreement, cost, full_macs, tokens, grid}: how suggest ranks
    (convert/two_stage.py; since 2026-12-07)} (since 2026-12-02; older
    manifests lack it; those of 2026-12-02 name `log_probs` ("log_probs")
    instead of `scores`), tools {...},
    eval {split, tokens, keras_perplexity, keras_r_at_3},
    variants {NAME: {status, file, sha256, bytes, quantization,
              state ("inside": in the file's variables, or "io"; since
              2026-12-03, absent before: "io"), state_note,
              sparse_encoding, xnnpack {ok, error}, inputs, outputs,
              perplexity, r_at_3, change_vs_keras, suggest_agreement (with a
              two-stage suggest: the share of validation positions where
              it shows step's words; since 2026-12-07), error}},
    learning {lambda, half_life, tokens, perplexity_without, perplexity_with,
              grid, tuned_on, file}: the user-history cache's values, tuned on
              the validation tokens (edge_runtime/cache.py; since 2026-12-06,
              absent before or where no file converted: the cache's defaults)
Paths in it are relative to the manifest's folder, so `tflite/` can be
copied to a device on its own.
"""
import hashlib
import json
import os

FORMAT_VERSION = 1
FILE = "manifest.json"


class ManifestError(ValueError):
    """A manifest or model the device cannot use; one-line message."""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_versioned(path, file, what, error=ManifestError, newest=FORMAT_VERSION):
    """(document, its path): a JSON file, or a folder holding `file`, whose integer
    format_version this runtime reads; `error` says what is wrong in one line."""
    if os.path.isdir(path):
        path = os.path.join(path, file)
    if not os.path.exists(path):
        raise error(f"no {what} at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not a readable {what}: {e}") from None
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if not isinstance(version, int):
        raise error(f"{path} has no format_version")
    if version > newest:
        raise error(f"{path} has format version {version}; this runtime reads up to {newest}: update edge_runtime")
    return doc, path


def load(path):
    """Read and check a manifest (a file, or a folder holding manifest.json)."""
    manifest, path = read_versioned(path, FILE, "manifest")
    manifest["_dir"] = os.path.dirname(os.path.abspath(path))
    return manifest


def variant_path(manifest, name, check=True):
    """Absolute path of a variant's .tflite file, its sha256 checked."""
    variants = manifest.get("variants", {})
    if name not in variants:
        raise ManifestError(f"no variant {name!r}; the manifest has {', '.join(variants) or 'none'}")
    v = variants[name]
    if v.get("status") != "ok":
        raise ManifestError(f"variant {name!r} failed to convert: {v.get('error', 'unknown error')}")
    path = os.path.join(manifest["_dir"], v["file"])
    if not os.path.exists(path):
        raise ManifestError(f"model file {path} is missing")
    if check and sha256_file(path) != v["sha256"]:
        raise ManifestError(f"{path} does not match the manifest's sha256: refusing to load it")
    return path


def vocab_path(manifest, check=True):
    path = os.path.join(manifest["_dir"], manifest["vocab"]["file"])
    if not os.path.exists(path):
        raise ManifestError(f"vocabulary file {path} is missing")
    if check and sha256_file(path) != manifest["vocab"]["sha256"]:
        raise ManifestError(f"{path} does not match the manifest's sha256: refusing to load it")
    return path
