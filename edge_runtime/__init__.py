"""What runs on the device: numpy, ai-edge-litert and the standard library only.

The tokenizer and the vocabulary format live here because they are the
contract between the trainer and the device; training imports them from here.
"""
