#!/usr/bin/env python
"""Entry point: ``python evaluate.py TASK.yaml DIR/ --data-path D $MODEL_ARGS`` (see --help)."""

from evaluation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
