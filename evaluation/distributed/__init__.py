"""Everything about ranks lives here, behind the scorer API (``evaluation/scoring/api.py``).

``environment`` reads the launcher's variables, ``groups`` forms the reference's
model-/data-parallel groups, ``session`` is a rank's start-up agreement and shutdown,
``data_parallel`` deals a file's requests over ranks and gathers results back in order,
``tensor_parallel`` adds the collectives to a GLM shard, ``faults`` ends the run when a rank
fails and names it. Tasks, metrics and aggregation import nothing from here.
"""
