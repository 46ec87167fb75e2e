"""Presentation: the tables, figures and verdicts of notebooks 02 to 07, paper vs ours,
deviations, the README's results section."""
