"""Paired comparison of evaluation runs: ``python -m evaluation.compare BASELINE NEW [...]``.

``runs`` loads run folders and pairs their items, ``statistics`` compares paired items
(McNemar, paired bootstrap, Holm, minimum detectable effect, verdicts), ``units`` applies it
to every group and file, and ``markdown`` / ``html_report`` / ``json_report`` / ``plots`` write
the reports.
"""
