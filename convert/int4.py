"""int4: 4-bit weights, by ai-edge-quantizer (the `quantizer` extra).

The TensorFlow converter has no int4 option, so the int4 file is the float32
file (convert/export.py's one-hot embedding, which the converter turns into
EMBEDDING_LOOKUP: the quantizer has an int4 recipe for that op, none for
GATHER) run through the quantizer's `dynamic_wi4c_afp32` recipe: symmetric
per-channel int4 weights in every FULLY_CONNECTED and the embedding table,
float activations quantized on the fly by XNNPACK's FULLY_CONNECTED. Block-wise
int4 (`dynamic_wi4b32_afp32`) needs input widths divisible by 32, which
PTB's 200 is not; the Hadamard-rotated recipe gives a channel of a pruned
matrix a zero scale, which XNNPACK refuses; the static recipe (int8
activations) leaves the embedding in float and calibrates worse than the
TensorFlow converter's int8. benchmarks/int4.py measures each of these, and
what each matrix in int4 costs in perplexity.

int4mixed keeps the output layer in int8 (`dynamic_wi8_afp32`) and puts the
embedding and the recurrent matrices in int4: the output layer is where int4
costs most of its perplexity (benchmarks/int4.py).
"""
RECIPE = "dynamic_wi4c_afp32"
# op output names of each group of matrices (keras_models/language_model.py's layer names)
GROUPS = dict(embedding="embedding", output="output", recurrent="rnn_")
INT4_GROUPS = {"int4": tuple(GROUPS), "int4mixed": ("embedding", "recurrent")}


def mix_recipe(int4_groups):
    """The quantizer's rules: int4 per channel in the ops of `int4_groups`, int8 in the others."""
    from ai_edge_quantizer import recipe
    if set(int4_groups) == set(GROUPS):
        return getattr(recipe, RECIPE)()  # the converter's int4, as it is
    rules = recipe.dynamic_wi8_afp32()
    for g in int4_groups:  # later rules win
        rules += getattr(recipe, RECIPE)(regex=f".*{GROUPS[g]}.*")
    return rules


def quantize(float_bytes, precision="int4"):
    """The int4 or int4mixed .tflite bytes of a float32 .tflite; ImportError names the extra."""
    try:
        from ai_edge_quantizer import quantizer
    except ImportError:
        raise ImportError(f"{precision} needs ai-edge-quantizer: pip install -e '.[quantizer]'") from None
    result = quantizer.Quantizer(bytes(float_bytes), mix_recipe(INT4_GROUPS[precision]))
    return bytes(result.quantize(enable_progress_report=False, enable_progress_bar=False).quantized_model)
