"""Keras run directory -> LiteRT (.tflite) step models and their manifest."""
