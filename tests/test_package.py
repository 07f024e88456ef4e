"""Package hygiene: the ComfyUI entry imports cleanly outside ComfyUI; cascade_core never imports comfy."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_entry_point_imports_outside_comfyui():
    """In a fresh interpreter without ComfyUI: importing the pack's entry file does nothing and fails nothing."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pixel_cascade_pack', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pixel_cascade_pack'] = m; spec.loader.exec_module(m)\n"
        "assert m.__all__ == [], m.__all__\n"
        "assert not any(k == 'comfy' or k.startswith('comfy.') for k in sys.modules)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr


def test_core_never_imports_comfy():
    for path in (ROOT / "cascade_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("comfy", "comfy_api", "folder_paths", "server", "nodes"), \
                    f"{path.relative_to(ROOT)} imports {name}"


def test_lazy_public_api():
    import cascade_core

    assert cascade_core.load_unet.__name__ == "load_unet"
    assert "load_unet" in cascade_core.__all__
