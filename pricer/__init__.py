"""pricer: a pytest regression gate for LLMs that predict a product's price from its description."""

__version__ = "0.1.0"
