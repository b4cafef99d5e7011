"""The README's code examples run as written, each in a fresh namespace, and do what they say.

Every python block runs; the checks then look at the namespace of a block found by the section
it stands in (not by its position), so that adding an example elsewhere in the README cannot make
them check the wrong one.
"""

import pathlib
import re

import jax
import numpy as np

import nprnn

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# A heading, or a whole fenced block (matched whole, so that a '#' line inside a block is not
# taken for a heading); group "code" holds a python block's text.
_PARTS = re.compile(
    r"^#{1,6} (?P<heading>.+?)\n|^```(?P<lang>\w*)\n(?P<code>.*?)^```",
    flags=re.M | re.S,
)


def _python_blocks() -> list[tuple[str, str]]:
    """``(heading of the section it stands in, code)`` of every python block, in order."""
    heading, blocks = None, []
    for match in _PARTS.finditer(README.read_text()):
        if match["heading"] is not None:
            heading = match["heading"].strip()
        elif match["lang"] == "python":
            blocks.append((heading, match["code"]))
    return blocks


def test_blocks_are_found_by_section():
    sections = [heading for heading, _ in _python_blocks()]
    assert sections.count("Using the cells in your own JAX code") == 1
    assert sections.count("From Flax") == 2  # a linen and an NNX example


def test_readme_python_examples_run():
    namespaces: dict[str, list[dict]] = {}
    for heading, block in _python_blocks():
        namespace: dict = {}
        with jax.enable_x64(False):
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
        namespaces.setdefault(heading, []).append(namespace)

    # The quickstart ends with gradients for every parameter and a projected update.
    (quick,) = namespaces["Using the cells in your own JAX code"]
    assert set(quick["grads"]) == set(quick["params"])
    assert quick["hs"].shape == (100, 32, 256)
    np.testing.assert_allclose(np.linalg.norm(quick["params"]["w_h"], axis=0), 1.0, rtol=1e-5)

    # From Flax: nn.RNN(cell) and the sequence layer give the same outputs from the same
    # variables; the NNX step keeps the constants and lands on unit-norm weights.
    linen, nnx = namespaces["From Flax"]
    assert linen["hs_rnn"].shape == (8, 20, 32) and linen["carry"].h.shape == (8, 32)
    # float32: at the paper's gammas a rounding difference grows about 1.25x per step (README,
    # Figure 1), to ~1e-4 after these 20 steps; tests/test_flax.py checks equality in float64.
    np.testing.assert_allclose(linen["hs"], linen["hs_rnn"], rtol=0, atol=1e-3)
    assert nnx["hs"].shape == (8, 20, 32)
    cell = nnx["model"].cell
    assert cell is nnx["cell"] and cell.const_names == ("var_c", "var_h")
    var_c, var_h = nprnn.normprop_variances(2.0, 2.0, 1.0)  # the default gammas
    assert (cell.var_c[...], cell.var_h[...]) == (np.float32(var_c), np.float32(var_h))
    np.testing.assert_allclose(np.linalg.norm(cell.w_h[...], axis=0), 1.0, rtol=1e-5)
