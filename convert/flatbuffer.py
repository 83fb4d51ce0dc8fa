"""A converted .tflite written again with its quantization parameters stored once.

Each signature is a subgraph of its own, and each subgraph repeats the
quantization parameters of every tensor it uses, the weights' among them:
per channel, a float32 scale and an int64 zero point for every row. For
the output layer that is 12 bytes a vocabulary word, once for `step` and
once for `suggest`; in a 0.86 MB PTB file (10,000 words, a tied table at
rank 32) the parameters were 325,440 bytes, 38% of the file. FlatBuffers
lets two tensors point at one table, and LiteRT copies the parameters out
when it builds the tensor, so identical parameters are written once and
shared. Nothing else changes: the weights, ops and signatures are the same
objects written again, each buffer's data inside the flatbuffer and 16-byte
aligned, as the TensorFlow converter writes it (ai-edge-quantizer appends
it after the flatbuffer instead; files here are far below FlatBuffers' 2 GB).
"""
import numpy as np

ALIGN = 16  # the schema's force_align for buffer data
IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _aligned_bytes(builder, data):
    """A [ubyte] vector whose first byte is ALIGN-aligned (the schema's force_align)."""
    payload = np.asarray(data, np.uint8).tobytes()
    builder.StartVector(1, len(payload), ALIGN)
    builder.head -= len(payload)
    builder.Bytes[builder.head:builder.head + len(payload)] = payload
    builder.vectorNumElems = len(payload)
    return builder.EndVector()


def _classes():
    schema = _schema()

    class SharedQuantization(schema.QuantizationParametersT):
        """Packed once per builder; every tensor holding it points at that table."""
        packed = None

        def Pack(self, builder):
            if self.packed is None or self.packed[0] is not builder:
                self.packed = (builder, super().Pack(builder))
            return self.packed[1]

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder):
            data = _aligned_bytes(builder, self.data) if self.data is not None and len(self.data) else None
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return SharedQuantization, AlignedBuffer


def _key(q):
    arrays = (q.min, q.max, q.scale, q.zeroPoint)
    return tuple(None if a is None else np.asarray(a).tobytes() + np.asarray(a).dtype.str.encode()
                 for a in arrays) + (q.quantizedDimension,)


def share_quantization(data):
    """The same model with identical quantization parameters written once (bytes)."""
    import flatbuffers
    schema = _schema()
    if bytes(data[4:8]) != IDENTIFIER:
        raise ValueError("not a .tflite flatbuffer")
    model = schema.ModelT.InitFromPackedBuf(bytes(data), 0)
    shared_class, buffer_class = _classes()
    shared = {}
    for g in model.subgraphs or ():
        for t in g.tensors or ():
            q = t.quantization
            if q is None or q.details is not None:  # custom quantization: left as it is
                continue
            key = _key(q)
            if key not in shared:
                shared[key] = shared_class()
                shared[key].__dict__.update(vars(q))
            t.quantization = shared[key]
    for b in model.buffers or ():
        if b.offset and b.offset > 1:  # data after the flatbuffer (ai-edge-quantizer writes it so): inline it
            b.data = np.frombuffer(data, np.uint8, count=b.size, offset=b.offset)
            b.offset = b.size = 0
        b.__class__ = buffer_class
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())
