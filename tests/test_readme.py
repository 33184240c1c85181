"""Every `python` block of README.md runs, in order, in one namespace (the later blocks reuse the
set-up block), so the "use it in your own training loop" examples cannot rot."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_an_example_per_method():
    text = "\n".join(BLOCKS)
    for name in ("SPLLoss", "SGDSSampler", "InfoBatchSampler", "DataParameters",
                 "per_sample_grad_norms", "LossTeacher", "AlignmentAgent"):
        assert name in text, f"no README example uses {name}"


def test_every_readme_python_block_runs(capsys):
    namespace: dict = {}
    for number, block in enumerate(BLOCKS):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # name the failing block
            pytest.fail(f"README python block {number} failed: {error!r}\n{block}")
    printed = capsys.readouterr().out
    assert "selected" in printed and "decisions" in printed
