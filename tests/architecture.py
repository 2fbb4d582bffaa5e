"""An import-linter contract type: no module imports a private name of another module.

``from segloop.core.metrics import _crop`` couples two modules through what one of them keeps
to itself; the layers contract cannot see it (the arrow may point the right way). Registered
in pyproject.toml (``[tool.importlinter] contract_types``) and run by ``make lint-imports``.
"""

from __future__ import annotations

import re

from importlinter import Contract, ContractCheck, output

_FROM_IMPORT = re.compile(r"^\s*from\s+(?P<module>[\w.]+)\s+import\s+\(?(?P<names>[^)#]*)")


def private_names(line: str) -> list[str]:
    """The private names (``_x``, not ``__x__``) a ``from ... import ...`` line imports."""
    match = _FROM_IMPORT.match(line)
    if match is None:
        return []
    names = [part.strip().split(" as ")[0].strip() for part in match["names"].split(",")]
    return [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]


class NoPrivateNamesContract(Contract):
    """Every ``from A import _b`` where A is another module of the root package breaks it."""

    type_name = "no_private_names"

    def check(self, graph, verbose: bool) -> ContractCheck:  # noqa: ANN001 - grimp's graph
        broken = []
        for importer in sorted(graph.modules):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if imported == importer:
                    continue
                for detail in graph.get_import_details(importer=importer, imported=imported):
                    for name in private_names(detail["line_contents"]):
                        broken.append(
                            f"{importer}:{detail['line_number']} imports {imported}.{name}"
                        )
        return ContractCheck(kept=not broken, metadata={"broken": broken})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["broken"]:
            output.print_error(line)
