"""Tables as text: Markdown pipe tables and LaTeX booktabs tables, with no tabulate or jinja2
dependency, so that the report's files depend on the code alone."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    head = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def latex_table(frame: pd.DataFrame, caption: str) -> str:
    """A booktabs tabular inside a table float (no jinja2 dependency)."""

    def esc(value: object) -> str:
        text = str(value)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                     ("#", r"\#"), ("±", r"$\pm$"), ("–", "--"), ("->", r"$\to$")):  # fmt: skip
            text = text.replace(a, b)
        return text

    spec = "r" + "l" + "r" * (len(frame.columns) - 2)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(esc(c) for c in frame.columns) + r" \\",
        r"\midrule",
        *(" & ".join(esc(v) for v in row) + r" \\" for row in frame.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
