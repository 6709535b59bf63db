"""Clears the outputs and execution counts of notebooks before they are committed
(``make strip-notebooks``; the test suite checks that the stored notebooks have none).

    python notebooks/strip_outputs.py notebooks/*.ipynb
"""

import sys

import nbformat


def strip(path: str) -> bool:
    """Strips one notebook in place; returns whether it had anything to strip."""
    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(notebook, path)
    return changed


if __name__ == "__main__":
    for notebook_path in sys.argv[1:]:
        print(f"{notebook_path}: {'stripped' if strip(notebook_path) else 'clean'}")
