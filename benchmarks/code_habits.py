"""Counts for a reader: in-package imports inside functions, ``: Any`` annotations, the largest modules.

python benchmarks/code_habits.py .        # the checkout to count
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def count(checkout: Path) -> dict[str, object]:
    root = checkout / "fer_stream"
    inner = anys = 0
    sizes: list[tuple[int, str]] = []
    for p in sorted(root.rglob("*.py")):
        src = p.read_text()
        sizes.append((len(src.splitlines()), str(p.relative_to(checkout))))
        for fn in ast.walk(ast.parse(src)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("fer_stream"):
                    inner += 1
                elif isinstance(n, ast.Import) and any(a.name.startswith("fer_stream") for a in n.names):
                    inner += 1
        anys += src.count(": Any")
    return {"inner_imports": inner, "any_annotations": anys, "modules": len(sizes), "largest": sorted(sizes)[-5:]}


if __name__ == "__main__":
    print(count(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
