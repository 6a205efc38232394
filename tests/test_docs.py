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
