"""The README's example on a user's own CNN runs as written, and leaves the head untouched."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    m = re.search(r"<!-- readme-example:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its example block (marked <!-- readme-example: ... -->)"
    return m.group(1)


def test_the_readme_example_initialises_the_listed_convs_and_leaves_the_head(data_root, monkeypatch):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    code = _example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    build, rest = code.split("\ntrain = ", 1)
    ns: dict = {}
    exec(build, ns)  # the user's model, as they made it
    before = {k: v.clone() for k, v in ns["model"].state_dict().items()}
    exec("train = " + rest, ns)
    after = ns["model"].state_dict()
    assert torch.equal(before["7.weight"], after["7.weight"]) and torch.equal(before["7.bias"], after["7.bias"])
    assert not torch.equal(before["0.weight"], after["0.weight"]) and not torch.equal(before["3.weight"], after["3.weight"])
    assert torch.equal(before["0.bias"], after["0.bias"])  # biases are the user's, too
