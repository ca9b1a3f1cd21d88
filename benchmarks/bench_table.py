"""One markdown table printer for the benchmarks, so their output pastes into notes as is."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(
    title: str, header: Sequence[object], rows: Sequence[Sequence[object]], numbers: bool = False
) -> None:
    """Print `title`, then the table; `numbers` right-aligns the cells below the header."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = (
            str(x).rjust(w) if numbers else str(x).ljust(w)
            for x, w in zip(row, widths, strict=True)
        )
        print("| " + " | ".join(cells) + " |")
