"""The README's fenced code blocks, each with the section it sits in and where it starts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

_HEADING = re.compile(r"^(#{1,6}) (.+)$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language (``sh``, ``python``, empty), its text and its place."""

    language: str
    text: str
    line: int
    """The README line of the block's first line (the one after the opening fence)."""
    sections: tuple[str, ...]
    """The headings it sits under, outermost first (``("A five-minute tour", "With the CLI")``)."""

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0].strip() if self.text.strip() else ""

    @property
    def name(self) -> str:
        """How a failure names the block: its README line and its first line."""
        return f"README.md:{self.line} `{self.first_line}`"

    def under(self, section: str) -> bool:
        return section in self.sections


def readme_blocks(path: Path = README) -> list[Block]:
    """Every fenced block of ``path`` in order (headings inside blocks are not headings)."""
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    fence: tuple[str, int, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if fence is not None:
            if line.strip() == "```":
                language, start, body = fence
                sections = tuple(title for _, title in headings)
                blocks.append(Block(language, "\n".join(body) + "\n", start, sections))
                fence = None
            else:
                fence[2].append(line)
            continue
        if match := _FENCE.match(line):
            fence = (match.group(1), number + 1, [])
        elif match := _HEADING.match(line):
            level = len(match.group(1))
            headings = [(lvl, title) for lvl, title in headings if lvl < level]
            headings.append((level, match.group(2).strip()))
    return blocks
