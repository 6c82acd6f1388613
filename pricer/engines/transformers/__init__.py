"""The transformers engine: a causal LM loaded in this process at a bit width, its precision, adapters and cache."""
