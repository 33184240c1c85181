"""A tiny notebook, shared by the publishing and CLI tests."""

import nbformat


def _notebook(*sources: str) -> dict:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# title")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    return notebook
