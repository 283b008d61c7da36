"""Counts for a reader: in-package imports inside functions, `: Any` annotations, the largest modules.

    python benchmarks/code_habits.py .
"""
import ast, sys
from pathlib import Path
root = Path(sys.argv[1]) / "fer_stream"
inner = anys = 0
sizes = []
for p in sorted(root.rglob("*.py")):
    src = p.read_text(); tree = ast.parse(src)
    sizes.append((len(src.splitlines()), str(p.relative_to(root.parent))))
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("fer_stream"):
                    inner += 1
                elif isinstance(n, ast.Import) and any(a.name.startswith("fer_stream") for a in n.names):
                    inner += 1
    anys += src.count(": Any")
print(f"in-package imports inside functions: {inner}; ': Any': {anys}; modules: {len(sizes)}; largest: {sorted(sizes)[-5:]}")
