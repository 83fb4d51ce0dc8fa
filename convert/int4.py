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
"""
RECIPE = "dynamic_wi4c_afp32"


def quantize(float_bytes):
    """The int4 .tflite bytes of a float32 .tflite; ImportError names the extra."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ImportError("int4 needs ai-edge-quantizer: pip install -e '.[quantizer]'") from None
    result = quantizer.Quantizer(bytes(float_bytes), getattr(recipe, RECIPE)())
    return bytes(result.quantize(enable_progress_report=False, enable_progress_bar=False).quantized_model)
