"""Python copies of the prompt texts of src/format/prompt.ts (arc24 and compact, plain style), for the Python tests
and bench/vocab.py that need realistic prompts without calling Node. test_vocab.py checks them against the keep set
the TypeScript side derives from its own builders."""

from __future__ import annotations

Grid = list[list[int]]


def arc24_grid(g: Grid) -> str:
    rows = "".join(f"{i + 1} {''.join(map(str, row))}\n" for i, row in enumerate(g))
    return f"```grid shape: {len(g)}x{len(g[0])}\n{rows}```"


def arc24_prompt(train: list[tuple[Grid, Grid]], test: Grid) -> str:
    out = "".join(
        f"## Example {i + 1}\n\n### Input\n\n{arc24_grid(a)}\n\n### Output\n\n{arc24_grid(b)}\n\n"
        for i, (a, b) in enumerate(train)
    )
    return f"{out}## Test case\n\n### Input\n\n{arc24_grid(test)}\n\n### Output\n\n"


def compact_grid(g: Grid) -> str:
    return "\n".join("".join(map(str, row)) for row in g) + "."


def compact_prompt(train: list[tuple[Grid, Grid]], test: Grid) -> str:
    out = "".join(f"I\n{compact_grid(a)}\nO\n{compact_grid(b)}\n" for a, b in train)
    return f"{out}I\n{compact_grid(test)}\nO\n"


FORMATS = {"arc24": (arc24_prompt, arc24_grid), "compact": (compact_prompt, compact_grid)}
