"""Codecs and heads from another installed package, found by name through entry points: a real
``.dist-info`` on the path for the test (no mocks), the command line, checkpoints and the public
conformance checks."""

import importlib
import sys
import textwrap

import pytest

from maskrep.cli import main

PLUGIN = '''
from maskrep.codecs import PCACodec
from maskrep.detection.heads import CRMaskHead


class TinyPCA(PCACodec):
    """The smallest plugin: a built-in codec under a new name, nothing else."""


class PluginHead(CRMaskHead):
    pass


def broken():
    raise RuntimeError("never loads")
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install ``maskrep_plugin_demo`` for the test: its module and a dist-info with entry points."""
    from maskrep.codecs.base import REGISTRY as codecs
    from maskrep.detection.heads import REGISTRY as heads

    site = tmp_path / "site"
    site.mkdir()
    (site / "maskrep_plugin_demo.py").write_text(PLUGIN)
    info = site / "maskrep_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: maskrep-plugin-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [maskrep.codecs]
        tinypca = maskrep_plugin_demo:TinyPCA
        brokencodec = maskrep_plugin_demo:broken_missing_name

        [maskrep.heads]
        pluginhead = maskrep_plugin_demo:PluginHead
    """))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    saved = [(r, dict(r.table), dict(r.origins), r._scanned) for r in (codecs, heads)]
    for r in (codecs, heads):
        r._scanned = False
    yield site
    for r, table, origins, scanned in saved:
        r.table.clear()
        r.table.update(table)
        r.origins.clear()
        r.origins.update(origins)
        r._scanned = scanned
    sys.modules.pop("maskrep_plugin_demo", None)


def test_plugin_codec_fits_and_reconstructs_from_the_command_line(plugin, synthetic, tmp_path, capsys):
    from maskrep.codecs import get_codec, list_codecs, load

    with pytest.warns(UserWarning, match=r"codec plugin 'brokencodec' .*maskrep-plugin-demo.* could not be loaded"):
        names = list_codecs()
    assert "tinypca" in names and "brokencodec" not in names
    out = tmp_path / "tiny.npz"
    train, val = synthetic["train"][0], synthetic["val"][0]
    assert main(["fit", "tinypca", "--annotations", train, "--mask-size", "12", "--dim", "6", "--out", str(out)]) == 0
    codec = load(out)
    assert type(codec).__name__ == "TinyPCA" and codec.name == "tinypca" and codec.mask_size == 12
    assert get_codec("tinypca", mask_size=8, dim=4).name == "tinypca"
    report = tmp_path / "r.json"
    assert main(["reconstruct", "--codec", str(out), "--annotations", val, "--json", str(report)]) == 0
    assert '"codec": "tinypca"' in report.read_text()
    with pytest.raises(SystemExit):
        main(["fit", "tinypca", "--help"])
    assert "--no-whiten" in capsys.readouterr().out  # its options come from the built-in it extends


@pytest.mark.filterwarnings("ignore:the codec plugin 'brokencodec'")
def test_plugin_codec_and_head_pass_the_public_conformance_checks(plugin, tmp_path):
    from maskrep.codecs import get_codec
    from maskrep.detection.heads import get_head
    from maskrep.testing import check_codec, check_head, disc_masks

    codec = get_codec("tinypca", mask_size=12, dim=10).fit(disc_masks(300, 12, seed=1))
    check_codec(codec, tmp_path)
    check_head(lambda: get_head("pluginhead", in_channels=16))


@pytest.mark.filterwarnings("ignore:the codec plugin 'brokencodec'")
def test_a_checkpoint_names_the_plugin_it_needs(plugin, synthetic, tmp_path, capsys):
    from pathlib import Path

    from maskrep.codecs.base import REGISTRY

    tiny = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")
    codec_file = tmp_path / "tiny.npz"
    ann, images = synthetic["train"]
    assert main(["fit", "tinypca", "--annotations", ann, "--mask-size", "8", "--dim", "4", "--out", str(codec_file)]) == 0
    config = tmp_path / "cfg.py"
    config.write_text("from maskrep.engine import recipe\n"
                      f"cfg, _ = recipe.load_config({tiny!r})\n"
                      "cfg['data']['with_masks'] = True\n"
                      f"cfg['model']['mask_head'] = {{'name': 'meinst', 'codec': {str(codec_file)!r}, 'num_convs': 1}}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", ann, images, "--out", str(out), "data.num_images=2",
                 "solver.max_iter=1", "solver.warmup_iters=1"]) == 0
    import torch

    extra = torch.load(out / "model_final.pth", weights_only=True)["extra"]
    assert extra["codec"]["name"] == "tinypca" and extra["codec"]["plugin"] == "maskrep-plugin-demo"
    del REGISTRY.table["tinypca"]  # the plugin uninstalled
    REGISTRY._scanned = True
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out / "model_final.pth"), "--input",
                 str(min(Path(images).glob("*.jpg"))), "--output", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "the codec 'tinypca' from the plugin package 'maskrep-plugin-demo' is not installed" in err
