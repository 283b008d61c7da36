"""The package's shape: no import loops, nothing importing upward, old module paths still working."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_stream"
# Lower layers never import higher ones: values and settings; media; models; the pipeline; serving;
# settings -> objects; the analysis engine (sources + models + sinks + summary); commands; the command line.
LAYERS = {
    "frames": 0,
    "errors": 0,
    "health": 0,
    "config": 0,
    "_compat": 0,
    "palette": 0,
    "io": 1,
    "model": 2,
    "stream": 3,
    "serve": 4,
    "build": 5,
    "analysis": 6,
    "commands": 7,
    "cli": 8,
    "__main__": 9,
}


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent != PACKAGE
    }


def _imports(path: Path) -> set[str]:
    """Every fer_stream module ``path`` imports, at the top or inside functions (type-only imports aside)."""
    out = set()
    tree = ast.parse(path.read_text())
    type_only = {
        id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer_stream"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out.add(node.module)
            out.update(n for n in names if (PACKAGE.parent / n.replace(".", "/")).with_suffix(".py").is_file())
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fer_stream"))
    return {m for m in out if m != "fer_stream" and not m.endswith(".__init__")}


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[1]]


GRAPH = {m: {i for i in _imports(p) if i in _modules()} for m, p in _modules().items()}


def test_every_module_has_a_layer():
    assert all(m.split(".")[1] in LAYERS for m in GRAPH), sorted(m for m in GRAPH if m.split(".")[1] not in LAYERS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_nothing_imports_upward(module):
    upward = sorted(i for i in GRAPH[module] if _layer(i) > _layer(module))
    assert not upward, f"{module} imports {upward} from a higher layer"


def test_no_import_loops():
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for n in sorted(GRAPH[m]):
            if seen.get(n) == 1:
                raise AssertionError("import loop: " + " -> ".join(path[path.index(n) :] + [n]))
            if n not in seen:
                visit(n, path + [n])
        seen[m] = 2

    for m in sorted(GRAPH):
        if m not in seen:
            visit(m, [m])


@pytest.mark.parametrize(
    "old, new",
    [
        ("fer_stream.sources", "fer_stream.io.sources"),
        ("fer_stream.pipeline", "fer_stream.stream.pipeline"),
        ("fer_stream.classify", "fer_stream.model.classifier"),
        ("fer_stream.monitor", "fer_stream.serve.monitor"),
    ],
)
def test_old_module_paths_still_import_with_a_warning(old, new):
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_public_api():
    from fer_stream import EmotionClassifier, FaceDetector, Pipeline  # noqa: F401
    from fer_stream.io.sinks import EventSink, VideoSink  # noqa: F401
    from fer_stream.io.sources import AVSource  # noqa: F401


def test_the_command_line_imports_no_heavy_module():
    """``fer-stream --help`` and a mistyped flag answer at once: the command line module loads none of
    torch, transformers, MediaPipe, PyAV or Ray (each command's module is loaded when it is chosen)."""
    import subprocess
    import sys

    heavy = "('torch', 'transformers', 'mediapipe', 'av', 'ray')"
    code = f"import fer_stream.cli, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize(
    "old, new", [("fer_stream.commands.run", "fer_stream.commands.analyse"), ("fer_stream.commands.cluster", "fer_stream.analysis.ray")]
)
def test_the_engines_old_paths_still_import_with_a_warning(old, new):
    test_old_module_paths_still_import_with_a_warning(old, new)


@pytest.mark.parametrize("name", ["run", "batch", "fleet", "image", "bench", "parity", "eval", "export", "train", "models", "config"])
def test_each_command_module_owns_its_parser_and_handler(name):
    from fer_stream import cli

    module = cli.command(name)
    assert callable(module.handle) and module.parser().prog.startswith("fer-stream")


@pytest.mark.parametrize("command", ["", "batch", "fleet", "image", "bench", "parity", "eval", "export", "models", "config"])
def test_help_loads_no_heavy_module(command):
    """Every command's ``--help`` answers without torch, transformers, MediaPipe, PyAV or Ray
    (``train --help`` is the exception, left for now: its parser shares a module with the training loop, which imports torch)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom fer_stream.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'mediapipe', 'av', 'ray') if m in sys.modules), file=sys.stderr)"
    )
    args = [*command.split(), "--help"]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120)
    assert r.returncode == 0 and "usage: fer-stream" in r.stdout, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr


def test_a_command_that_cannot_be_loaded_is_one_line(monkeypatch, capsys):
    from fer_stream import cli

    monkeypatch.delenv("FER_STREAM_DEBUG", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "image", "no_such_module")
    assert cli.main(["image", "face.jpg"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fer-stream: error: cannot load the image command (No module named")
    assert err[0].endswith("; reinstall fer-stream")
