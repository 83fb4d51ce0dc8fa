"""How a model is made smaller: one module per method, each with the same
hooks (`methods/base.py`). Nothing here names another layer above it; the
trainer finds the methods through `pruning/registry.py`."""
