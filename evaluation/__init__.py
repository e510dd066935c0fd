"""glm-eval: a YAML-driven zero-shot evaluation harness for GLM-family language models."""

__version__ = "0.1.0"
