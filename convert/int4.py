"""int4: 4-bit weights, by ai-edge-quantizer (the `quantizer` extra).

The TensorFlow converter has no int4 option, so the int4 file is the float32
file (convert/export.py's one-hot embedding, which the converter turns into
EMBEDDING_LOOKUP: the quantizer has an int4 recipe for that op, none for
GATHER) run through the quantizer's `dynamic_wi4c_afp32` recipe: symmetric
per-channel int4 weights in every FULLY_CONNECTED and the embedding table,
float activations quantized on the fly by XNNPACK's FULLY_CONNECTED. Each
channel's scale comes from the quantizer's OCTAV algorithm (Sakr et al.
2022), not from the channel's largest weight: it clips each channel where the
mean squared error of its 4-bit weights is least, the rare large weights
clipped so the many small ones get finer steps. Same bytes, same ops; on PTB it
halved the born-again 2x400's int4 cost on validation (+1.78% -> +0.89%
against Keras) and cut the 1 MB student's from +7.48% to +5.99%
(benchmarks/int4.py --clipping). Block-wise
int4 (`dynamic_wi4b32_afp32`) needs input widths divisible by 32, which
PTB's 200 is not; the Hadamard-rotated recipe gives a channel of a pruned
matrix a zero scale, which XNNPACK refuses; the static recipe (int8
activations) leaves the embedding in float and calibrates worse than the
TensorFlow converter's int8. benchmarks/int4.py measures each of these, and
what each matrix in int4 costs in perplexity.

LiteRT's EMBEDDING_LOOKUP reads an int4 table of odd width wrongly (it
packs two weights a byte, and a row of an odd number starts mid-byte): a
point pruned to a 151-wide embedding gave perplexity 522 for 113. Such a
table stays in int8 (`odd_width`), and the converter says so. A
FULLY_CONNECTED of an odd number of inputs is read right and stays int4,
but XNNPACK does not run it, so the file steps slower; the converter says
that too.

The second factor of a low-rank tied embedding is read both ways, [E, r] after the lookup and
[r, E] before the output layer: int4 would round each copy by its own channels, two errors in every
word's path. Both copies stay int8 (`read_both_ways`): on the rank-48 student, 1% more bytes for
validation 106.70 -> 105.10.

int4mixed keeps the output layer in int8 (`dynamic_wi8_afp32`) and puts the
embedding and the recurrent matrices in int4: the output layer is where int4
costs most of its perplexity (benchmarks/int4.py). A tied embedding is the
output layer's matrix, so there it stays in int8 and only the recurrent
matrices are int4.
"""
import re

RECIPE = "dynamic_wi4c_afp32"
CLIPPING = ("OCTAV", "MIN_MAX_UNIFORM_QUANT")  # the quantizer's algorithm names: the converter's, the old one
# op output names of each group of matrices (keras_models/language_model.py's layer names)
GROUPS = dict(embedding="embedding", output="output", recurrent="rnn_")
INT4_GROUPS = {"int4": tuple(GROUPS), "int4mixed": ("embedding", "recurrent")}
_SAID = set()  # what quantize has said in this process


def shares_table(float_bytes):
    """True if one constant is read by both an EMBEDDING_LOOKUP and a
    FULLY_CONNECTED: a tied embedding, the output layer's own matrix."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytes(float_bytes), 0)
    ops = {schema.BuiltinOperator.EMBEDDING_LOOKUP: "lookup", schema.BuiltinOperator.FULLY_CONNECTED: "fc"}
    readers = {}
    for g in model.subgraphs:
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if kind:  # lookup: (ids, table); FC: (input, weights, bias)
                readers.setdefault(g.tensors[op.inputs[1]].buffer, set()).add(kind)
    return any(kinds == {"lookup", "fc"} for kinds in readers.values())


def odd_width(float_bytes):
    """{"lookup": {output name: weights buffer} of the EMBEDDING_LOOKUPs whose table has an odd
    width, "fc": the same of the FULLY_CONNECTED ops whose weights have an odd number of inputs}.
    LiteRT reads an int4 table of odd width wrongly; XNNPACK does not run an int4 matrix of odd
    inputs (LiteRT's own kernel does, slower: benchmarks/odd_widths.py)."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytes(float_bytes), 0)
    kinds = {schema.BuiltinOperator.EMBEDDING_LOOKUP: "lookup", schema.BuiltinOperator.FULLY_CONNECTED: "fc"}
    out = {"lookup": {}, "fc": {}}  # output name: the weights' buffer (a matrix read by two signatures is one)
    for g in model.subgraphs:
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = kinds.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            weights = g.tensors[op.inputs[1]] if kind else None  # lookup: (ids, table); FC: (input, weights)
            shape = [] if weights is None or weights.shape is None else list(weights.shape)
            if len(shape) == 2 and shape[1] % 2:
                out[kind][g.tensors[op.outputs[0]].name.decode()] = weights.buffer
    return out


def read_both_ways(float_bytes):
    """Output names of the FULLY_CONNECTED ops whose weights are another's transposed: the second
    factor of a low-rank tied embedding, [E, r] after the lookup and [r, E] before the output's
    first factor. int4 rounds each copy by its own channels, two errors in every word's path (the
    rank-48 student's int4 file: validation 106.70 with them in int4; see benchmarks.md)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytes(float_bytes), 0)
    out = []
    for g in model.subgraphs:
        weights = []  # (op's output name, the float matrix)
        for op in g.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
                continue
            t = g.tensors[op.inputs[1]]
            data = model.buffers[t.buffer].data
            if t.type == schema.TensorType.FLOAT32 and data is not None and t.shape is not None and len(t.shape) == 2:
                w = np.frombuffer(bytes(data), np.float32).reshape([int(d) for d in t.shape])
                weights.append((g.tensors[op.outputs[0]].name.decode(), w))
        for i, (name, w) in enumerate(weights):
            for other, v in weights[:i] + weights[i + 1:]:
                if w.shape == v.shape[::-1] and w.shape[0] != w.shape[1] and np.array_equal(w, v.T):
                    out.append(name)
                    break
    return out


def mix_recipe(int4_groups, int8_ops=(), clipping=CLIPPING[0]):
    """The quantizer's rules: int4 per channel, scaled by the algorithm `clipping`, in the ops of
    `int4_groups`, int8 (its largest weight) in the others and in the ops named in `int8_ops`."""
    from ai_edge_quantizer import recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    int4 = getattr(recipe, RECIPE)
    algorithm = getattr(AlgorithmName, clipping)
    if set(int4_groups) == set(GROUPS) and not int8_ops:
        return int4(algorithm_key=algorithm)  # int4 everywhere
    rules = recipe.dynamic_wi8_afp32()
    for g in int4_groups:  # later rules win
        rules += int4(regex=f".*{GROUPS[g]}.*", algorithm_key=algorithm)
    for name in int8_ops:  # the quantizer's scope of an op: its output names, each followed by ";"
        rules += recipe.dynamic_wi8c_afp32(regex=f"^{re.escape(name)};")
    return rules


def _octav_never_zero():
    """ai-edge-quantizer 0.10 floors a channel's bound at 1e-9 before OCTAV's clip, so a channel of
    zeros (a word never seen, a pruned row) is clipped to 0 and gets scale 0, which XNNPACK refuses
    ("unsupported scale value (0.000000)"). Floor the clip there too: that channel's weights stay 0."""
    from ai_edge_quantizer.algorithms.uniform_quantize import octav
    guess = octav._guess_clipping_with_octav
    if getattr(guess, "never_zero", False):
        return
    import numpy as np

    def floored(*args, **kwargs):
        return np.maximum(guess(*args, **kwargs), 1e-9)
    floored.never_zero = True
    octav._guess_clipping_with_octav = floored


def quantize(float_bytes, precision="int4", log=print, clipping=CLIPPING[0]):
    """The int4 or int4mixed .tflite bytes of a float32 .tflite (`clipping`: how each int4
    channel's scale is chosen, one of CLIPPING); ImportError names the extra."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise ImportError(f"{precision} needs ai-edge-quantizer: pip install -e '.[quantizer]'") from None
    groups = INT4_GROUPS[precision]
    if "output" not in groups and shares_table(float_bytes):
        # tied: the table is the output layer's, so it stays int8, stored once; in int4 for the
        # lookup alone it would be stored twice, at 1.5x the bytes of int8 once
        groups = tuple(g for g in groups if g != "embedding")
    odd = odd_width(float_bytes)
    both = read_both_ways(float_bytes)
    said = []
    if both:
        said.append(f"{precision}: the low-rank embedding's second factor stays in int8: it is read both ways "
                    "(after the lookup and before the output), and int4 would round each copy by its own channels")
    if odd["lookup"]:
        said.append(f"{precision}: the embedding table stays in int8: its width is odd, and LiteRT reads an "
                    "int4 table of odd width wrongly")
    slow = {b for n, b in odd["fc"].items() if any(GROUPS[g] in n for g in groups)}
    if slow:
        said.append(f"{precision}: XNNPACK does not run an int4 matrix with an odd number of inputs, and "
                    f"{len(slow)} here have one: the file steps on LiteRT's own kernels, slower (a model with "
                    "even widths avoids it)")
    for line in said:
        if line not in _SAID:  # the converter makes a file more than once (the state inside, then not)
            _SAID.add(line)
            log(line)
    if clipping == "OCTAV":
        _octav_never_zero()
    int8_ops = sorted(set(odd["lookup"]) | set(both))
    result = quantizer.Quantizer(bytes(float_bytes), mix_recipe(groups, int8_ops, clipping))
    return bytes(result.quantize(enable_progress_report=False, enable_progress_bar=False).quantized_model)
