"""Package-level checks: lazy import, public docstrings, no prints in library code, the backend switch."""
import ast
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import fastmbrl

PKG_DIR = pathlib.Path(fastmbrl.__file__).parent
PUBLIC_MODULES = ["nn", "models", "planning", "agents", "envs"]


def test_import_is_lazy():
    # `import fastmbrl` must not pull in numba or gymnasium: they load when first needed.
    code = "import sys, fastmbrl; print(sorted(m for m in ('numba', 'gymnasium', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no_such_thing"):
        fastmbrl.no_such_thing  # noqa: B018


@pytest.mark.parametrize("modname", PUBLIC_MODULES)
def test_public_names_have_docstrings(modname):
    mod = getattr(fastmbrl, modname)
    assert mod.__all__, f"fastmbrl.{modname} exports nothing"
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for meth_name, meth in vars(obj).items():
                if inspect.isfunction(meth) and not meth_name.startswith("_") and not inspect.getdoc(meth):
                    missing.append(f"{name}.{meth_name}")
    assert not missing, f"public names without a docstring in fastmbrl.{modname}: {missing}"


def test_library_modules_do_not_print():
    # Only the command line talks to the terminal directly; the library logs or reports progress.
    allowed = {"cli.py", "__main__.py"}
    offenders = []
    for path in PKG_DIR.rglob("*.py"):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(PKG_DIR)}:{node.lineno}")
    assert not offenders, f"print() in library modules: {offenders}"


def test_no_deep_learning_framework_imported():
    offenders = []
    for path in PKG_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in ("torch", "jax", "tensorflow"):
                    offenders.append(f"{path.name}: {n}")
    assert not offenders


def test_purepython_switch_selects_reference_kernels():
    code = "import fastmbrl.nn._kernels as k; print(k.COMPILED)"
    env = dict(os.environ, FASTMBRL_PUREPYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_compiled_kernels_are_active():
    # An installed fastmbrl must run the C kernels; a silent fall-back to the NumPy twins would be a
    # 10x slowdown nobody notices. (From a source tree, build first: python setup.py build_ext --inplace.)
    from fastmbrl.backend import use_compiled
    from fastmbrl.nn import _kernels

    if not use_compiled():
        pytest.skip("FASTMBRL_PUREPYTHON=1 selects the NumPy twins on purpose")
    assert _kernels.COMPILED, "fastmbrl._ext._nn is not built: the C kernels are missing"
