"""Error codes are defined once (service.errors.ErrorCode), each with its words in English and Vietnamese,
and no code in the service names one that is not defined there."""

import ast
from pathlib import Path

from service import errors
from service.errors import MESSAGES, ErrorCode

SERVICE = Path(__file__).resolve().parents[2] / "service"
ERROR_CLASSES = {
    name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.AppError)
} | {
    "AppError",
    "RateLimited",
    "NotAllowedNow",
    "IllegalTransitionError",
    "Open311Error",
    "UnsafeUrl",
    "StorageUnavailable",
    "PreconditionFailed",
}


def _codes_used() -> dict[str, str]:
    """Every string literal given as an error code: the first argument of an error class, `code=`, or
    a class attribute `code = "..."` / `status, code = 409, "..."`."""
    used: dict[str, str] = {}
    for path in SERVICE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in ERROR_CLASSES and node.args and isinstance(node.args[0], ast.Constant):
                    used[node.args[0].value] = f"{path.name}:{node.lineno}"
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant) and name in ERROR_CLASSES:
                        used[keyword.value.value] = f"{path.name}:{node.lineno}"
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id in ERROR_CLASSES for base in node.bases
            ):
                for statement in node.body:
                    if isinstance(statement, ast.Assign):
                        targets = statement.targets[0]
                        names = [t.id for t in getattr(targets, "elts", [targets]) if isinstance(t, ast.Name)]
                        values = getattr(statement.value, "elts", [statement.value])
                        for target, value in zip(names, values, strict=False):
                            if target == "code" and isinstance(value, ast.Constant):
                                used[value.value] = f"{path.name}:{statement.lineno}"
    return used


def test_every_error_code_has_english_and_vietnamese_words():
    assert set(MESSAGES) == set(ErrorCode)
    for code, (english, vietnamese) in MESSAGES.items():
        assert english.strip() and vietnamese.strip(), code


def test_no_code_answers_with_an_error_code_that_is_not_defined():
    undefined = {code: where for code, where in _codes_used().items() if code not in set(ErrorCode)}
    assert undefined == {}
