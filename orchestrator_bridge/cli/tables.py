"""Tables of the command line (``producer run``'s summary, ``producer status``), via rich."""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence
from typing import IO

from rich import box
from rich.console import Console
from rich.table import Table


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, stream: IO[str]) -> str:
    """A table as text (rich), as wide as the terminal ``stream`` is, plain when it is not one."""
    terminal = stream.isatty()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    width = shutil.get_terminal_size().columns if terminal else 200
    Console(file=out, width=width, force_terminal=terminal, color_system="auto" if terminal else None).print(
        table
    )
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
