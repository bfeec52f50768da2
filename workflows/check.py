"""``hexie check [PATH…]``: check process definitions and print every problem.

Each problem is one line on ``out``, ``FILE:LINE:COLUMN: error: PATH: MESSAGE`` (or
``warning:``), sorted by file, line and column; a summary goes to ``err`` so that
``out`` holds diagnostics only. The exit status is 0 when there is no error
(warnings allowed) and 1 otherwise.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence, TextIO

from hexie.workflows.loader import (
    ROLES_FILE, _check_calls, default_definitions_dir, definition_files, load_definitions, load_process_file,
    load_roles,
)
from hexie.workflows.spec import Diagnostic, RolesSpec

__all__ = ["check_paths"]


def check_paths(paths: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Check each PATH (default: the definitions folder); return the exit status.

    A folder means its ``roles.yaml`` and every definition in it. A file is checked
    against the ``roles.yaml`` beside it, or failing that the default folder's.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    targets = [str(p) for p in paths] or [str(default_definitions_dir())]
    diagnostics: list[Diagnostic] = []
    files: list[str] = []
    for target in targets:
        found, checked = _check_target(target)
        diagnostics += found
        files += [f for f in checked if f not in files]
    diagnostics = sorted(dict.fromkeys(diagnostics), key=lambda d: (d.file, d.line, d.column))
    for diagnostic in diagnostics:
        print(diagnostic, file=out)
    errors = sum(d.severity == "error" for d in diagnostics)
    print(_summary(errors, len(diagnostics) - errors, len(files)), file=err)
    return 1 if errors else 0


def _check_target(target: str) -> tuple[list[Diagnostic], list[str]]:
    """Diagnostics for one command-line PATH, and the files it stood for."""
    if os.path.isdir(target):
        registry = load_definitions(target)
        return registry.diagnostics, registry.files
    if not os.path.isfile(target):
        message = "文件或目录不存在 / no such file or directory"
        return [Diagnostic(target, 1, 1, "error", message)], []
    if os.path.basename(target) == ROLES_FILE:
        return load_roles(target)[1], [target]
    roles, diagnostics = _roles_for(target)
    spec, found = load_process_file(target, roles)
    diagnostics += found
    if spec is not None and any(state.call is not None for state in spec.states):
        diagnostics += _calls_of(spec, target, roles)
    return diagnostics, [target]


def _calls_of(spec, target: str, roles: RolesSpec | None) -> list[Diagnostic]:
    """``call:`` of a single file, checked against the processes of the files beside it (the
    folder it will be loaded from): the called process, its fields and its final states."""
    folder = os.path.dirname(target) or "."
    processes = {}
    for path in definition_files(folder):
        if os.path.abspath(path) == os.path.abspath(target):
            continue
        other = load_process_file(path, roles)[0]
        if other is not None:
            processes.setdefault(other.key, other)
    processes[spec.key] = spec
    return [d for d in _check_calls(processes) if d.file == spec.path]


def _roles_for(target: str) -> tuple[RolesSpec | None, list[Diagnostic]]:
    """The roles a single file is checked against, with that roles file's problems."""
    for candidate in (os.path.join(os.path.dirname(target), ROLES_FILE),
                      os.path.join(str(default_definitions_dir()), ROLES_FILE)):
        if os.path.isfile(candidate):
            return load_roles(candidate)
    message = (f"找不到 {ROLES_FILE}（同目录或默认定义目录中），未检查角色和层级 / "
               f"no {ROLES_FILE} beside the file or in the default definitions folder; roles and levels not checked")
    return None, [Diagnostic(target, 1, 1, "error", message)]


def _summary(errors: int, warnings: int, files: int) -> str:
    """``2 errors, 1 warning in 6 files``, with the Chinese first."""
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"
    return (f"共 {files} 个文件：{errors} 个错误，{warnings} 个警告 / "
            f"{plural(errors, 'error')}, {plural(warnings, 'warning')} in {plural(files, 'file')}")
