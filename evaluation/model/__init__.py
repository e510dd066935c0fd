"""glm-eval model code: the GLM-130B network, its checkpoints and its loader."""
