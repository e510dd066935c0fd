"""Custom task classes named by a task YAML's ``module:`` (one module per suite)."""
