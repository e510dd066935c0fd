"""Build the harness's data folder from the raw public datasets (``python -m evaluation.prepare``).

The GLM-130B suites were published as a pre-built tarball that later vanished; here
each suite is rebuilt by a converter from the raw files (laid out as ``../shared/data``),
deterministically, with every item count checked against the published figure.
One module per suite; prompt templates are data under ``prompts/``.
"""
