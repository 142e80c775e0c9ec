"""Built-in parts. Importing this package registers every module below it.

The core imports this package once (``registry.load_builtin_plugins``) and
never names a module inside it; adding a part is adding a file here.
"""
import importlib
import pkgutil


def _import_all(package_name: str, package_path) -> None:
    for info in sorted(pkgutil.walk_packages(package_path, prefix=package_name + "."), key=lambda i: i.name):
        importlib.import_module(info.name)


_import_all(__name__, __path__)
