"""The Python blocks of the docs pages that teach by example run as written."""

import os
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def test_writing_a_codec_example_runs(tmp_path, monkeypatch, synthetic):
    from maskrep.cli import main
    from maskrep.codecs import CODECS, get_codec, load

    blocks = python_blocks(DOCS / "codecs.md")
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(blocks[0], "docs/codecs.md", "exec"), {"__name__": "docs_codecs"})  # noqa: S102 (the page, as written)
        assert get_codec("profile", mask_size=14).code_length == 28
        assert os.path.exists(tmp_path / "profile.npz")
        # the command line finds it by name, its options from the constructor
        assert main(["fit", "profile", "--annotations", synthetic["train"][0], "--limit", "3", "--mask-size", "14",
                     "--out", str(tmp_path / "p14.npz")]) == 0
        assert load(tmp_path / "p14.npz").mask_size == 14
    finally:
        CODECS.pop("profile", None)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    """The README's API blocks, in order and in one namespace, beside an ``instances_train2017.json``
    (a synthetic set written for the test)."""
    import shutil

    from maskrep.data.synthetic import make_synthetic_coco

    path = make_synthetic_coco(tmp_path / "synth", num_images=24, seed=3)
    shutil.copy(path, tmp_path / "instances_train2017.json")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS.parent / "README.md")
    assert len(blocks) >= 3
    namespace = {"__name__": "readme"}
    for k, block in enumerate(blocks):
        exec(compile(block, f"README.md block {k + 1}", "exec"), namespace)  # noqa: S102 (the README, as written)
    assert namespace["logits"].shape == (3, 56, 56)
    assert len(namespace["ious"]) == len(namespace["image"])
