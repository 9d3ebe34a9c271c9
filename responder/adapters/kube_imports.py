"""Import only the parts of ``kubernetes_asyncio.client`` the adapters use.

The library's ``kubernetes_asyncio/client/__init__.py``, and those of its ``api`` and ``models`` subpackages, import
every API class and all ~770 model modules: some 30 MB of memory for the dozen the responder touches. And
``import kubernetes_asyncio.anything`` runs them all, because the top package's ``__init__`` imports ``client``.

:func:`lazy_client`, called by the adapters before they import anything of the library, puts three lazy packages in
``sys.modules`` in place of ``kubernetes_asyncio.client``, ``.client.api`` and ``.client.models``. Each is the real
package's module object (its spec, ``__path__`` and ``__file__``, so ``kubernetes_asyncio.client.api_client`` or
``...models.v1_deployment`` import as ever) without its ``__init__`` run: a name the real ``__init__`` would have
imported, ``V1Deployment`` or ``AppsV1Api``, is imported from the same submodule when first asked for, and kept.
What each ``__init__`` imports from where is read from its text (never run), so the table follows whatever version
of the library is installed. The client's deserializer finds models with
``getattr(kubernetes_asyncio.client.models, "V1Deployment")``, which the lazy ``models`` package serves like the
real one.

When the real package was imported first (a test, a tool), or an ``__init__`` does anything but import names and
set constants (a library upgrade changed them), :func:`lazy_client` does nothing and the library loads as usual.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LAZY_PACKAGES", "lazy_client"]

_ROOT = "kubernetes_asyncio"
LAZY_PACKAGES = (f"{_ROOT}.client", f"{_ROOT}.client.api", f"{_ROOT}.client.models")

_Sources = Mapping[str, tuple[str, str]]  # exported name -> (module it comes from, its name there)


def lazy_client() -> None:
    """Install the lazy packages (once; a no-op when ``kubernetes_asyncio.client`` is already imported)."""
    if LAZY_PACKAGES[0] in sys.modules:
        return
    root = importlib.util.find_spec(_ROOT)  # a top-level name: finding it runs nothing
    if root is None:
        return
    modules: dict[str, types.ModuleType] = {}
    paths = {_ROOT: list(root.submodule_search_locations or [])}
    for name in LAZY_PACKAGES:  # each inside one before it (client: api, models)
        spec = importlib.machinery.PathFinder.find_spec(name, paths[name.rpartition(".")[0]])
        if spec is None or spec.origin is None or spec.submodule_search_locations is None:
            return
        exported = _read_init(Path(spec.origin), name)
        if exported is None:
            return
        modules[name] = _lazy_package(spec, *exported)
        paths[name] = list(spec.submodule_search_locations)
    client, api, models = (modules[name] for name in LAZY_PACKAGES)
    vars(client).update(api=api, models=models)  # as importing the subpackages would have set them
    sys.modules.update(modules)


def _read_init(path: Path, package: str) -> tuple[_Sources, dict[str, Any]] | None:
    """The names an ``__init__`` imports (and from where), and the constants it sets (``__all__``,
    ``__version__``); None when it does anything else, which a lazy package could not reproduce, or cannot be read
    as Python source (an image that ships bytecode only): the library then loads as usual."""
    sources: dict[str, tuple[str, str]] = {}
    constants: dict[str, Any] = {}
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            where = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            for alias in node.names:
                if alias.name == "*":
                    return None
                sources[alias.asname or alias.name] = (where, alias.name)
        elif isinstance(node, ast.Assign) and all(isinstance(target, ast.Name) for target in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError):
                return None
            constants.update({target.id: value for target in node.targets if isinstance(target, ast.Name)})
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring is fine
            return None
    return sources, constants


def _lazy_package(
    spec: importlib.machinery.ModuleSpec, sources: _Sources, constants: dict[str, Any]
) -> types.ModuleType:
    module = importlib.util.module_from_spec(spec)  # the module's attributes, its code not run

    def __getattr__(name: str) -> Any:
        if name in sources:
            where, original = sources[name]
            value = getattr(importlib.import_module(where), original)
        elif name.startswith("__"):
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}")
        else:  # a submodule (``client.rest``, ``models.v1_pod``): the real package has those it imported
            try:
                value = importlib.import_module(f"{spec.name}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{spec.name}.{name}":
                    raise
                raise AttributeError(f"module {spec.name!r} has no attribute {name!r}") from None
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *sources})

    vars(module).update(constants, __getattr__=__getattr__, __dir__=__dir__)
    return module
