import json
from pathlib import Path

import numpy as np
import pytest

from maskrep.cli import main


def test_fit_then_reconstruct(synthetic, tmp_path, capsys):
    train, val = synthetic["train"][0], synthetic["val"][0]
    out = tmp_path / "pca.npz"
    assert main(["fit", "pca", "--annotations", train, "--mask-size", "16", "--dim", "8", "--no-whiten", "--out", str(out)]) == 0
    from maskrep.codecs import load

    codec = load(out)
    assert codec.params["whiten"] is False and codec.code_length == 8  # flags parse as flags, not strings
    report = tmp_path / "r.json"
    plot = tmp_path / "rd.png"
    assert main(["reconstruct", "--codec", str(out), "--codec", "svd:mask_size=16,rank=2", "--annotations", val,
                 "--json", str(report), "--plot", str(plot)]) == 0
    results = json.loads(report.read_text())
    assert [r["codec"] for r in results] == ["pca", "svd"]
    assert all(0 < r["crop_iou"] <= 1 and 0 < r["full_iou"] <= 1 for r in results)
    assert plot.stat().st_size > 1000
    assert "| pca |" in capsys.readouterr().out


def test_reconstruct_refuses_unfitted_and_bad_names(synthetic, capsys):
    assert main(["reconstruct", "--codec", "pca:dim=4", "--annotations", synthetic["val"][0]]) == 2
    assert "needs fitting: run `maskrep fit pca ...`" in capsys.readouterr().err
    assert main(["reconstruct", "--codec", "pcaa", "--annotations", synthetic["val"][0]]) == 2
    assert "valid names: bitmap, contour, dct, learned, pca, polar, svd" in capsys.readouterr().err


def test_demo_writes_outputs(tmp_path):
    from maskrep import demo

    results = demo.run(str(tmp_path), num_train=16, num_val=3)  # enough masks for a PCA with D = 40
    assert len(results) == len(demo.DEMO_GRID)
    for name in ("reconstruction.md", "reconstruction.json", "rate_distortion.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 100
    bitmap_full = next(r for r in results if r["codec"] == "bitmap" and r["params"]["resolution"] == 28)
    assert bitmap_full["crop_iou"] == 1.0  # the identity codec loses nothing at crop resolution
    assert np.isfinite(bitmap_full["full_iou"])


def test_train_then_eval(synthetic, tmp_path, capsys):
    ann, images = synthetic["train"]
    out = tmp_path / "run"
    config = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")
    args = ["--config", config, "--data", ann, images, "--out", str(out)]
    assert main(["train", *args, "solver.max_iter=2", "data.num_images=3", "model.fcos.score_thresh=0.0"]) == 0
    assert capsys.readouterr().out.startswith("trained 2 iterations")
    for name in ("config.json", "metrics.jsonl", "model_final.pth", "last_checkpoint.pth", "coco_results.json"):
        assert (out / name).exists()
    trained = json.loads((out / "coco_eval.json").read_text())
    assert main(["eval", "--config", config, "--data", ann, images, "--checkpoint", str(out / "model_final.pth"),
                 "data.num_images=3", "model.fcos.score_thresh=0.0"]) == 0
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in capsys.readouterr().out
    again = json.loads((out / "eval_model_final" / "coco_eval.json").read_text())
    assert again["bbox"]["AP"] == trained["bbox"]["AP"] and again["bbox"]["AP50"] == trained["bbox"]["AP50"]


@pytest.mark.slow
def test_torchrun_fit_writes_the_matrix_of_one_process(synthetic, tmp_path):
    """`torchrun --nproc_per_node 2 -m maskrep fit pca ...`: two processes, each cropping half of the
    instances, write the matrix one process writes. The summed integer statistics are identical; the
    eigensolver's last bits follow its thread count, which torchrun sets to 1 per process."""
    import socket
    import subprocess
    import sys

    from maskrep.codecs import load

    train = synthetic["train"][0]
    args = ["fit", "pca", "--annotations", train, "--mask-size", "16", "--dim", "8"]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert main([*args, "--out", str(one)]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "maskrep",
                          *args, "--out", str(two)], check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("saved") == 1  # rank 0 alone writes
    a, b = load(one).state_dict(), load(two).state_dict()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-12, err_msg=key)


def test_fit_learned_and_reconstruct_contour_codecs(synthetic, tmp_path):
    from maskrep.codecs import load

    train, val = synthetic["train"][0], synthetic["val"][0]
    out = tmp_path / "learned.npz"
    assert main(["fit", "learned", "--annotations", train, "--mask-size", "16", "--dim", "6",
                 "--set", "width=4", "--set", "epochs=2", "--out", str(out)]) == 0
    codec = load(out)
    assert codec.name == "learned" and codec.params["epochs"] == 2 and codec.params["width"] == 4
    assert not (tmp_path / "learned.npz.training.pt").exists()
    report = tmp_path / "r.json"
    assert main(["reconstruct", "--codec", str(out), "--codec", "contour:mask_size=32,dim=20,mode=fourier",
                 "--codec", "polar:mask_size=32,rays=12", "--annotations", val, "--json", str(report),
                 "--plot", str(tmp_path / "rd.png")]) == 0
    results = json.loads(report.read_text())
    assert [r["codec"] for r in results] == ["learned", "contour", "polar"]
    assert all(0 < r["full_iou"] <= 1 and 0 < r["boundary_f"] <= 1 for r in results)
    assert main(["fit", "pca", "--annotations", train, "--set", "dim", "--out", str(tmp_path / "p.npz")]) == 2


def test_fit_takes_each_codecs_own_defaults_and_parameters(synthetic, tmp_path, capsys):
    from maskrep.codecs import load

    train = synthetic["train"][0]
    assert main(["fit", "dct", "--annotations", train, "--limit", "5", "--out", str(tmp_path / "d.npz")]) == 0
    assert load(tmp_path / "d.npz").mask_size == 128
    assert main(["fit", "svd", "--annotations", train, "--limit", "5", "--out", str(tmp_path / "s.npz")]) == 0
    assert load(tmp_path / "s.npz").mask_size == 14
    assert main(["fit", "svd", "--annotations", train, "--limit", "5", "--mask-size", "10", "--rank", "2",
                 "--mode", "reg", "--out", str(tmp_path / "s2.npz")]) == 0
    assert load(tmp_path / "s2.npz").params == {"mask_size": 10, "rank": 2, "mode": "reg", "logit_scale": 4.0}
    assert main(["fit", "polar", "--annotations", train, "--limit", "5", "--rays", "12",
                 "--out", str(tmp_path / "p.npz")]) == 0
    assert load(tmp_path / "p.npz").code_length == 14
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # an option another codec has
        main(["fit", "dct", "--annotations", train, "--rays", "12", "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 2 and "--rays" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fit", "pca", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--no-whiten" in text and "(default: 60)" in text


def test_predict_writes_pictures_and_the_coco_results_of_evaluation(synthetic, tmp_path):
    """A tiny model with a mask head trained one step: predict draws each input and writes the
    result dicts evaluation writes, with the file name."""
    from pathlib import Path

    ann, images = synthetic["train"]
    tiny = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")
    config = tmp_path / "tiny_crmask.py"
    config.write_text("from maskrep.engine import recipe\n"
                      f"cfg, _ = recipe.load_config({tiny!r})\n"
                      "cfg['data']['with_masks'] = True\n"
                      "cfg['model']['mask_head'] = {'name': 'crmask', 'codec': 'svd:mask_size=6,rank=2'}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", ann, images, "--out", str(out), "data.num_images=2",
                 "solver.max_iter=1", "model.fcos.score_thresh=0.0"]) == 0
    pictures = sorted(Path(images).glob("*.jpg"))[:2]
    results = tmp_path / "r.json"
    assert main(["predict", "--checkpoint", str(out / "model_final.pth"), "--input", *map(str, pictures),
                 "--output", str(tmp_path / "pics"), "--json", str(results), "--score-thresh", "0"]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == sorted(p.stem + ".png" for p in pictures)
    rows = json.loads(results.read_text())
    assert rows and {r["file_name"] for r in rows} <= {p.name for p in pictures}
    assert set(rows[0]) == {"image_id", "category_id", "bbox", "score", "segmentation", "file_name"}
    from PIL import Image

    sizes = {p.name: [Image.open(p).height, Image.open(p).width] for p in pictures}
    assert all(r["segmentation"]["size"] == sizes[r["file_name"]] for r in rows)
