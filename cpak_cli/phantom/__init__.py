"""Digital phantom of both lower limbs rendered as long-leg DX radiographs with exact truth.

Public API::

    from cpak_cli.phantom import make_case, render, write_case, generate, PhantomCase
"""

from __future__ import annotations

# Load the submodule `render` first: its later import would otherwise rebind the package
# attribute `render` (the function below) to the module.
from . import render as _render_module  # noqa: F401
from .case_files import generate, write_case  # loads the submodule `generate` first, then binds the function
from .generate import PhantomCase, make_case, render
from .spec import PhantomOptions

__all__ = ["PhantomCase", "PhantomOptions", "generate", "make_case",
           "render", "write_case"]
