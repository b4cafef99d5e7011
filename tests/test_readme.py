"""The README's code examples run as written."""

import pathlib
import re

import jax

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        namespace: dict = {}
        with jax.enable_x64(False):
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    # The quickstart example ends with gradients for every parameter and a projected update.
    assert set(namespace["grads"]) == set(namespace["params"])
    assert namespace["hs"].shape == (100, 32, 256)
