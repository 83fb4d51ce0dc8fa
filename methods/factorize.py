"""Factorization (`--factorize lowrank|tt`): which matrices, at what rank, and
how a trained model becomes a factored one.

How it changes the model: `plan()` gives the model spec's `factors`, one
entry per chosen matrix (keras_models/factored.py says what they mean):
- scope `recurrent`: the LSTM kernel and recurrent kernel, the QRNN kernel;
- scope `output`: the output matrix, or with tied embeddings the shared
  matrix E = A B (looked up as A[token] B, used as h B^T A^T; low rank only);
- scope `all`: both.
A rank is `--rank R`, or `--rank-fraction F` (r = F min(m, n) rounded to an
even number, at least 2: an int4 file's kernels run on XNNPACK only with an
even number of inputs, and an odd-width tied table stays in int8), and must
store fewer numbers than the matrix: r < m n / (m + n); `--target-macs F`
picks the rank fraction whose model comes closest to F of the dense MACs
(`fraction_for_macs`). TT takes `--tt-rank`,
`--tt-cores` (each side factored into that many near-equal sizes) or
`--tt-shape 5,5,8:6,10,10` for every chosen matrix.

What it does while training: nothing of its own. From scratch the factored
model is built and trained as it is; from a trained run (`--init-from`) the
train phase runs its `--epochs` (default 0) on the dense model first.

How it finishes (from a trained run): `from_trained()` replaces each chosen
matrix by its truncated SVD or TT-SVD, reporting the relative error per
matrix; the trainer then fine-tunes the factored model (`--finetune-epochs`).
"""
import numpy as np

from methods.base import Method

KINDS = ("none", "lowrank", "tt")
SCOPES = ("recurrent", "output", "all")
ARCHS = ("qrnn", "lstm")
# the weights of each layer, in variable order: its matrices first, then the rest
MATRIX_ORDER = {"qrnn": ("kernel",), "lstm": ("kernel", "recurrent_kernel"), "output": ("kernel",),
                "embedding": ("embeddings",)}


class FactorizeError(ValueError):
    """A factorization that cannot be made as asked; one-line message."""


def matrices(spec, scope):
    """[(key "LAYER/WEIGHT", rows, cols)] of the matrices `scope` covers."""
    from keras_models.matrices import matrices as all_matrices
    if scope not in SCOPES:
        raise FactorizeError(f"unknown --factorize-scope {scope!r}; choose from {', '.join(SCOPES)}")
    return [(key, rows, cols) for key, rows, cols, group in all_matrices(spec) if scope in (group, "all")]


def plan(spec, kind, scope="all", rank=None, rank_fraction=None, tt_rank=None, tt_cores=3, tt_shape=None):
    """The spec's `factors` for these options; FactorizeError says what is wrong."""
    from keras_models.factored import lowrank_pays, tt_spec
    if kind not in KINDS[1:]:
        raise FactorizeError(f"unknown --factorize {kind!r}; choose from {', '.join(KINDS)}")
    if spec["arch"] not in ARCHS:
        raise FactorizeError(f"--factorize supports {', '.join(ARCHS)}, not {spec['arch']} (its gate MLPs are "
                             "not factored yet)")
    if spec.get("factors"):
        raise FactorizeError("the model is factored already")
    factors = {}
    for key, rows, cols in matrices(spec, scope):
        if kind == "lowrank":
            if (rank is None) == (rank_fraction is None):
                raise FactorizeError("give one of --rank and --rank-fraction")
            r = rank if rank is not None else max(2, 2 * int(round(rank_fraction * min(rows, cols) / 2)))
            if not lowrank_pays(rows, cols, r):
                raise FactorizeError(f"rank {r} does not reduce {key} ({rows} x {cols}): it needs "
                                     f"1 <= r < {rows * cols / (rows + cols):.1f}")
            factors[key] = dict(kind="lowrank", rank=int(r))
        else:
            if key == "embedding/embeddings":
                raise FactorizeError("--factorize tt does not factor a tied embedding yet (its lookup needs "
                                     "rows of the TT matrix); use --factorize-scope recurrent, or lowrank")
            if tt_rank is None or tt_rank < 1:
                raise FactorizeError(f"--tt-rank must be at least 1, got {tt_rank}")
            if tt_cores < 2:
                raise FactorizeError(f"--tt-cores must be at least 2, got {tt_cores}")
            try:
                factors[key] = tt_spec(rows, cols, tt_rank, tt_cores, tt_shape)
            except ValueError as e:
                raise FactorizeError(f"{key}: {e}") from None
            check_tt_pays(key, rows, cols, factors[key])
    return factors


def check_tt_pays(key, rows, cols, factor):
    """FactorizeError unless the TT matrix stores fewer numbers and costs fewer MACs
    than the dense one (small cores at a high rank can cost more than both)."""
    from keras_models.factored import factor_macs, factor_params
    params, macs = factor_params(rows, cols, factor), factor_macs(rows, cols, factor)
    if params >= rows * cols or macs >= rows * cols:
        shape = "x".join(map(str, factor["rows"])) + ":" + "x".join(map(str, factor["cols"]))
        raise FactorizeError(f"TT ranks {factor['ranks']} ({shape}) do not reduce {key} ({rows} x {cols}): "
                             f"{params:,} numbers and {macs:,} MACs a token against {rows * cols:,} and "
                             f"{rows * cols:,} dense; lower --tt-rank or change --tt-shape")


def parse_tt_shape(text):
    """'5,5,8:6,10,10' -> ([5, 5, 8], [6, 10, 10]); FactorizeError if malformed."""
    try:
        rows, cols = text.split(":")
        m, n = [int(v) for v in rows.split(",")], [int(v) for v in cols.split(",")]
    except ValueError:
        raise FactorizeError(f"--tt-shape {text!r}: write the row and column factors as M1,M2,..:N1,N2,..") from None
    if len(m) != len(n) or len(m) < 2 or min(m + n) < 2:
        raise FactorizeError(f"--tt-shape {text!r}: as many row as column factors (at least 2), each >= 2")
    return m, n


def from_trained(spec, weights, factors):
    """-> (factored spec, its weights by layer name, {key: relative Frobenius error})
    from a plain model's `spec` and `weights` ({layer name: arrays})."""
    from keras_models.factored import from_dense
    new, errors = dict(weights), {}
    for layer in sorted({key.split("/")[0] for key in factors}):
        kind = "output" if layer == "output" else "embedding" if layer == "embedding" else spec["arch"]
        order = MATRIX_ORDER[kind]
        arrays = list(weights[layer])
        out = []
        for i, name in enumerate(order):
            key = f"{layer}/{name}"
            if key in factors:
                parts, errors[key] = from_dense(arrays[i], factors[key])
                out += parts
            else:
                out.append(arrays[i])
        new[layer] = out + arrays[len(order):]
    return dict(spec, factors=factors), new, {k: round(v, 6) for k, v in sorted(errors.items())}


def describe(spec):
    """The report's view of a factored spec: per matrix its factor and numbers stored."""
    from keras_models.factored import factor_params
    sizes = {key: (rows, cols) for key, rows, cols in matrices(spec, "all")}
    out = {}
    for key, f in (spec.get("factors") or {}).items():
        rows, cols = sizes[key]
        out[key] = dict(f, shape=[rows, cols], params=factor_params(rows, cols, f), dense_params=rows * cols)
    return out


def total_reduction(spec):
    """Numbers stored by the chosen matrices, factored / dense."""
    d = describe(spec)
    return round(sum(v["params"] for v in d.values()) / max(1, sum(v["dense_params"] for v in d.values())), 4) \
        if d else 1.0


def fraction_for_macs(spec, scope, target):
    """(rank fraction, MACs fraction it gives) of `--factorize lowrank` closest to
    `target` of the dense MACs; of equally close ones, the largest rank."""
    from keras_models.cost import closest_fraction

    def factored(f):
        try:
            return dict(spec, factors=plan(spec, "lowrank", scope, rank_fraction=f))
        except FactorizeError:  # a rank that does not pay for some matrix
            return None
    best = closest_fraction(spec, factored, target, np.linspace(0.001, 0.999, 999))
    if best is None:
        raise FactorizeError(f"no rank of --factorize-scope {scope} reduces every matrix of this model")
    return best


def options_plan(config, spec):
    """The factors the run's options ask for (`--target-macs`: the rank fraction
    `fraction_for_macs` finds, recorded in config["pruning"])."""
    shape = config.get("tt_shape")
    if config.get("target_macs") is not None:
        fraction, macs = fraction_for_macs(spec, config["factorize_scope"], config["target_macs"])
        config["rank_fraction"] = fraction
        config["pruning"].update(target_macs=config["target_macs"], rank_fraction=fraction, expected_macs=macs)
    return plan(spec, config["factorize"], config["factorize_scope"], config.get("rank"), config.get("rank_fraction"),
                config.get("tt_rank"), config.get("tt_cores", 3), parse_tt_shape(shape) if shape else None)


class Factorize(Method):
    """The trainer's view (methods/base.py): from scratch the factored model
    is built and trained; from a trained run the train phase runs its
    --epochs on the dense model, then `finish` factors it (SVD / TT-SVD) and
    --finetune-epochs fine-tunes the factored model."""

    DEFAULTS = dict(factorize="none", factorize_scope="all", rank=None, rank_fraction=None, tt_rank=None,
                    tt_cores=3, tt_shape=None)

    @classmethod
    def add_options(cls, a):
        d = cls.DEFAULTS
        a("--factorize", default=d["factorize"], metavar="{" + ",".join(KINDS) + "}",
          help="store matrices as factors: lowrank (A B) or tt (tensor train); from scratch, or from "
               "--init-from RUN by SVD / TT-SVD, then --finetune-epochs (default %(default)s)")
        a("--factorize-scope", default=d["factorize_scope"], metavar="{" + ",".join(SCOPES) + "}",
          help="recurrent (LSTM kernels, QRNN kernel), output (the output or tied embedding matrix) or all "
               "(default %(default)s)")
        a("--rank", type=int, default=None, help="lowrank: the rank of every factored matrix")
        a("--rank-fraction", type=float, default=None,
          help="lowrank: rank = F x min(rows, cols) per matrix, rounded to an even number, instead of --rank")
        a("--tt-rank", type=int, default=None, help="tt: the inner TT ranks")
        a("--tt-cores", type=int, default=d["tt_cores"],
          help="tt: cores per matrix; each side is factored into this many near-equal sizes (default %(default)s)")
        a("--tt-shape", default=None, metavar="M1,M2,..:N1,N2,..",
          help="tt: the row and column factors of every factored matrix, instead of near-equal ones")

    @classmethod
    def chosen_by(cls, c):
        return c["factorize"] != "none"

    @classmethod
    def takes_target_macs(cls, c):
        return c["factorize"] == "lowrank"

    @classmethod
    def finetunes_from(cls, c):
        return bool(c["init_from"])

    @classmethod
    def check(cls, c, arch, chosen):
        """The checks that need no matrix sizes (those come when the model is planned)."""
        if c["factorize"] not in KINDS:
            return f"unknown --factorize {c['factorize']!r}; choose from {', '.join(KINDS)}"
        if c["factorize_scope"] not in SCOPES:
            return f"unknown --factorize-scope {c['factorize_scope']!r}; choose from {', '.join(SCOPES)}"
        if not chosen:
            return None
        if arch not in ARCHS:
            return f"--factorize supports qrnn and lstm, not {arch} (its gate MLPs are not factored yet)"
        if c["schedule"] != "none":
            return (f"--factorize supports --schedule none, not {c['schedule']}; to factor a pruned model, "
                    "--init-from its run")
        if c["recover"] != "none":
            return "--recover rank-one does not combine with --factorize yet"
        if c["factorize"] == "lowrank":
            given = (c["rank"] is not None) + (c["rank_fraction"] is not None) + (c["target_macs"] is not None)
            if given != 1:
                return "--factorize lowrank takes one of --rank, --rank-fraction and --target-macs"
            if c["rank"] is not None and c["rank"] < 1:
                return f"--rank must be at least 1, got {c['rank']}"
            if c["rank_fraction"] is not None and not 0 < c["rank_fraction"] < 1:
                return f"--rank-fraction must be in (0, 1), got {c['rank_fraction']}"
            return None
        if c["tt_rank"] is None or c["tt_rank"] < 1:
            return f"--factorize tt needs --tt-rank of at least 1, got {c['tt_rank']}"
        if c["tt_cores"] < 2:
            return f"--tt-cores must be at least 2, got {c['tt_cores']}"
        if c["tt_shape"] is not None:
            try:
                parse_tt_shape(c["tt_shape"])
            except FactorizeError as e:
                return str(e)
        return None

    def __init__(self, config, init):
        super().__init__(config, init)
        self.finetunes = init is not None
        self.factors = None

    def spec(self, base):
        self.factors = options_plan(self.config, base)  # checked before anything is written
        return base if self.init is not None else dict(base, factors=self.factors)

    def finish(self, model, plain, ctx, status):
        from keras_models.language_model import build_language_model, named_weights, set_named_weights
        from methods.base import rounded_eval
        plain, _ = super().finish(model, plain, ctx, status)
        c = self.config
        report = dict(kind=c["factorize"], scope=c["factorize_scope"])
        if self.init is None or status != "completed":
            return plain, dict(factorization=dict(report, matrices=describe(plain.spec),
                                                  stored_fraction=total_reduction(plain.spec)))
        dense_ppl = rounded_eval(plain, ctx.valid)
        spec, weights, errors = from_trained(plain.spec, named_weights(plain), self.factors)
        factored = build_language_model(**spec)
        set_named_weights(factored, weights)
        factored_ppl = rounded_eval(factored, ctx.valid)
        ctx.log(f"factored {len(errors)} matrices ({c['factorize']}): valid perplexity {dense_ppl[0]} -> "
                f"{factored_ppl[0]} before fine-tuning; relative errors "
                + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()))
        return factored, dict(factorization=dict(
            report, matrices=describe(spec), stored_fraction=total_reduction(spec), relative_error=errors,
            valid_perplexity_dense=dense_ppl[0], valid_perplexity_factored=factored_ppl[0],
            valid_r_at_3_factored=factored_ppl[1]))
