"""Nothing lost, every error clear: training runs that resume honestly, files written safely, bad
input refused in one line naming where it is."""

import json
import os
import re
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from maskrep.cli import main
from maskrep.engine.trainer import Trainer, TrainingInterrupted, read_checkpoint

TINY = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")


# ---- a toy model for the training loop ------------------------------------------------------------

class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def forward(self, images, targets):
        return {"loss": (self.w ** 2).sum() * images.mean()}


def _toy_trainer(out, max_iter=6, period=2, hooks=()):
    torch.manual_seed(0)
    model = Toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)

    def loader(start):
        while True:
            yield torch.ones(1, 3, 4, 4), [{}]

    return Trainer(model, opt, sched, loader, max_iter=max_iter, out_dir=str(out), checkpoint_period=period,
                   log_period=1, hooks=hooks, progress=False)


def _records(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_resume_keeps_one_record_per_iteration(tmp_path):
    def stop_at_5(trainer, it):  # a crash after iteration 5; the last checkpoint is iteration 4
        if it == 5:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        _toy_trainer(tmp_path, hooks=[stop_at_5]).train()
    assert [r["iteration"] for r in _records(tmp_path)] == [1, 2, 3, 4, 5]
    t = _toy_trainer(tmp_path)
    assert t.resume() == 4
    t.train()
    assert [r["iteration"] for r in _records(tmp_path)] == [1, 2, 3, 4, 5, 6]  # 5 once, from the resumed run
    fresh = _toy_trainer(tmp_path, max_iter=2)
    fresh.start_fresh()
    fresh.train()
    assert [r["iteration"] for r in _records(tmp_path)] == [1, 2]  # a fresh file
    assert len((tmp_path / "metrics.previous-1.jsonl").read_text().splitlines()) == 6  # the earlier run, kept aside


def test_non_finite_loss_names_the_last_good_checkpoint(tmp_path):
    def poison(trainer, it):
        if it == 3:
            with torch.no_grad():
                trainer.model.w.fill_(float("inf"))

    t = _toy_trainer(tmp_path, hooks=[poison])
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 3: .* the last checkpoint with finite "
                                                 r"weights and losses is .*last_checkpoint\.pth \(iteration 2\)"):
        t.train()
    assert read_checkpoint(str(tmp_path / "last_checkpoint.pth"))["iteration"] == 2
    assert t.save() is False  # weights that are not finite are never written


def test_sigterm_saves_and_stops(tmp_path):
    def terminate(trainer, it):
        if it == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    t = _toy_trainer(tmp_path, max_iter=10, period=0, hooks=[terminate])
    with pytest.raises(TrainingInterrupted, match="SIGTERM: stopped at iteration 4; checkpoint saved"):
        t.train()
    assert read_checkpoint(str(tmp_path / "last_checkpoint.pth"))["iteration"] == 4
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


# ---- the training job -----------------------------------------------------------------------------

def _train_args(synthetic, out, *more):
    ann, images = synthetic["train"]
    return ["train", "--config", TINY, "--data", ann, images, "--out", str(out), "data.num_images=3", *more]


def test_resume_applies_or_refuses_changes(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=2")) == 0
    config = (out / "config.json").read_text()
    capsys.readouterr()
    # a different model: refused before anything is written
    assert main(_train_args(synthetic, out, "solver.max_iter=2", "model.depth=34")) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskrep: error: ") and "model.depth: 18 -> 34" in err and "--no-resume" in err
    assert (out / "config.json").read_text() == config
    # more iterations and a new learning rate: applied, and said
    assert main(_train_args(synthetic, out, "solver.max_iter=4", "solver.lr=0.005")) == 0
    printed = capsys.readouterr().out
    assert "resumed from iteration 2" in printed and "solver.lr: 0.01 -> 0.005" in printed
    state = read_checkpoint(str(out / "last_checkpoint.pth"))
    assert state["iteration"] == 4 and state["scheduler"]["base_lrs"] == [0.005, 0.005]
    assert json.loads((out / "config.json").read_text())["solver"]["lr"] == 0.005
    assert [r["iteration"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "loss" in r] == [1, 2, 3, 4]


def test_stale_temporaries_are_removed(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".last_checkpoint.pth.abc123.999999999.tmp"  # a writer that no longer runs
    stale.write_bytes(b"half")
    assert main(_train_args(synthetic, out, "solver.max_iter=1")) == 0
    assert not stale.exists() and "left by a writer that was killed" in capsys.readouterr().out


def test_interrupted_cli_run_exits_cleanly(synthetic, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    original = Trainer._log

    def log_then_terminate(self, record):
        original(self, record)
        if record.get("iteration") == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_log", log_then_terminate)
    assert main(_train_args(synthetic, out, "solver.max_iter=5")) == 143
    assert "stopped at iteration 1; checkpoint saved" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_log", original)
    assert main(_train_args(synthetic, out, "solver.max_iter=2")) == 0
    assert "resumed from iteration 1" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("solver.lr=abc", "solver.lr = 'abc' must be a number > 0"),
    ("solver.steps=4", "solver.steps = 4 must be a list of integers"),
    ("solver.batch_size=0", "solver.batch_size = 0 must be an integer >= 1"),
    ("solver.nope=1", "unknown key 'nope'"),
])
def test_bad_overrides_are_refused_in_one_line(synthetic, tmp_path, capsys, override, message):
    assert main(_train_args(synthetic, tmp_path / "run", override)) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskrep: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "config.json").exists()


def test_bad_config_and_checkpoints_name_the_file(synthetic, tmp_path, capsys):
    readme = str(Path(__file__).resolve().parents[1] / "README.md")
    assert main(["train", "--config", readme]) == 2
    assert "README.md: a config is a Python file (.py)" in capsys.readouterr().err
    out = tmp_path / "run"
    out.mkdir()
    # bytes on which the unpickler raises UnpicklingError, IndexError, UnicodeDecodeError, KeyError
    garbage = [np.random.default_rng(seed).bytes(64) for seed in (0, 17, 54, 62)]
    for content in (b"", *garbage):
        (out / "last_checkpoint.pth").write_bytes(content)
        assert main(_train_args(synthetic, out, "solver.max_iter=1")) == 2
        err = capsys.readouterr().err
        assert "last_checkpoint.pth: not a readable checkpoint" in err and "--no-resume" in err
    save = out / "last_checkpoint.pth"
    torch.save({"iteration": 3}, save)
    assert main(_train_args(synthetic, out, "solver.max_iter=1")) == 2
    assert "not a maskrep checkpoint (no 'model' weights in it)" in capsys.readouterr().err
    assert main(_train_args(synthetic, out, "solver.max_iter=1", "--no-resume")) == 0  # afresh: it trains


def test_eval_writes_beside_the_checkpoint_and_prints_the_summary(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=1", "model.fcos.score_thresh=0.0")) == 0
    capsys.readouterr()
    own = (out / "coco_eval.json").read_text()
    assert main(["eval", "--checkpoint", str(out / "model_final.pth"), "--per-category"]) == 0  # config from the checkpoint
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed
    assert "Average Recall" in printed and "ellipse" in printed  # the synthetic data's first class
    assert (out / "coco_eval.json").read_text() == own
    assert json.loads((out / "eval_model_final" / "coco_eval.json").read_text())["bbox"]["per_category"]


# ---- files ----------------------------------------------------------------------------------------

def test_concurrent_writers_of_one_codec_file(tmp_path):
    from maskrep.codecs import PCACodec, load

    masks = np.random.default_rng(0).random((200, 8, 8)) < 0.5
    codecs = [PCACodec(mask_size=8, dim=4, seed=s).fit(masks) for s in range(4)]
    path = tmp_path / "pca.npz"
    errors = []

    def write(codec):
        try:
            for _ in range(10):
                codec.save(path)
        except Exception as e:  # noqa: BLE001 - any failure is the test's finding
            errors.append(e)

    threads = [threading.Thread(target=write, args=(c,)) for c in codecs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert load(path).params["seed"] in range(4)  # one writer's whole file
    assert not [p for p in os.listdir(tmp_path) if p != "pca.npz"]


def test_reconstruct_checks_outputs_first_and_refuses_nothing_to_do(synthetic, tmp_path, capsys):
    val = synthetic["val"][0]
    target = tmp_path / "missing" / "deeper" / "r.json"
    assert main(["reconstruct", "--codec", "dct:mask_size=16,dim=20", "--annotations", val, "--json", str(target)]) == 0
    results = json.loads(target.read_text())  # strict JSON
    assert results[0]["codec"] == "dct"
    assert main(["reconstruct", "--codec", "dct:mask_size=16,dim=20", "--annotations", val, "--min-area",
                 "1e12"]) == 2
    assert "no instances to reconstruct" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [
    ("svd:size=14", "codec 'svd' has no parameter 'size'; its parameters: mask_size, rank, mode, logit_scale"),
    ("pca:rank=3", "codec 'pca' has no parameter 'rank'"),
    ("svd:rank=abc", "rank must be an integer [1, 14], got 'abc'"),
    ("dct:mask_size=0", "mask_size must be an integer >= 1, got 0"),
])
def test_codec_parameters_are_checked(synthetic, capsys, spec, message):
    assert main(["reconstruct", "--codec", spec, "--annotations", synthetic["val"][0]]) == 2
    assert message in capsys.readouterr().err


def test_fit_refuses_a_dimension_the_data_cannot_support(synthetic, tmp_path, capsys):
    assert main(["fit", "pca", "--annotations", synthetic["val"][0], "--limit", "39", "--dim", "60",
                 "--out", str(tmp_path / "p.npz")]) == 2
    assert "a PCA with dim=60 needs more than 60 masks to fit" in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()


def test_mask_iou_of_nothing():
    from maskrep.ops import mask_iou, mask_iou_pairwise

    assert mask_iou(np.zeros((0, 4, 5), bool), np.zeros((0, 4, 5), bool)).shape == (0,)
    assert mask_iou_pairwise(np.zeros((0, 4, 5), bool), np.zeros((2, 4, 5), bool)).shape == (0, 2)


# ---- bad annotation files -------------------------------------------------------------------------

def _coco(tmp_path, annotations=None, images=None, categories=None, name="a.json"):
    data = {"images": images if images is not None else [{"id": 1, "file_name": "x.jpg", "height": 10, "width": 10}],
            "categories": categories if categories is not None else [{"id": 1, "name": "thing"}],
            "annotations": annotations if annotations is not None else []}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


GOOD = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "segmentation": [[1, 1, 5, 1, 5, 5]],
        "iscrowd": 0}


@pytest.mark.parametrize("change, message, reason", [
    ({"segmentation": {"size": [10, 10], "counts": "9"}}, "RLE counts add up to 9, expected H * W = 100", "malformed_rle"),
    ({"segmentation": {"size": [10, 10], "counts": "0@"}}, "compressed RLE counts decode to a negative run", "malformed_rle"),
    ({"segmentation": {"size": ["10", "10"], "counts": [100]}}, "RLE size must be two integers [H, W], got ['10', '10']",
     "malformed_rle"),
    ({"segmentation": {"size": [10, 10], "counts": [120, -20]}}, "counts must be non-negative integers, got -20",
     "malformed_rle"),
    ({"id": 1}, "annotation id 1 appears twice", "duplicate_id"),
    ({"id": "two"}, "annotation id must be an integer, got 'two'", "malformed_annotation"),
    ({"bbox": [1, 1, 0, 4]}, "has zero width or height", "empty_box"),
])
def test_bad_annotations_are_named_and_skippable(tmp_path, change, message, reason):
    from maskrep.data import AnnotationError, CocoInstances

    bad = {**GOOD, "id": 2, **change}
    anns = [GOOD, bad, {**GOOD, "id": 3}]
    path = _coco(tmp_path, anns)
    with pytest.raises(AnnotationError, match="a.json: annotation .*" + re.escape(message)):
        list(CocoInstances(path))
    data = CocoInstances(path, on_error="skip")
    with pytest.warns(UserWarning, match="skipped bad annotations"):
        kept = list(data)
    assert len(kept) == 2 and data.skipped[reason] == 1


def test_bad_records_of_the_file_are_named(tmp_path):
    from maskrep.data import AnnotationError, CocoInstances

    no_id = _coco(tmp_path, [{k: v for k, v in GOOD.items() if k != "id"}])
    with pytest.raises(AnnotationError, match=r"annotation \? \(image 1\): the annotation has no 'id'"):
        list(CocoInstances(no_id))
    no_height = _coco(tmp_path, [GOOD], images=[{"id": 1, "file_name": "x.jpg", "width": 10}])
    with pytest.raises(AnnotationError, match="a.json: image 1 has no 'height'"):
        CocoInstances(no_height)
    skipped = CocoInstances(no_height, on_error="skip")
    with pytest.warns(UserWarning):
        # the image's annotation is counted under the reason its image was left out
        assert list(skipped) == [] and skipped.skipped == {"malformed_image": 2}
    no_name = _coco(tmp_path, [GOOD], categories=[{"id": 1}])
    with pytest.raises(AnnotationError, match="a.json: category 1 has no 'name'"):
        CocoInstances(no_name)
    as_object = tmp_path / "obj.json"
    as_object.write_text(json.dumps({"images": [], "categories": [], "annotations": {"1": GOOD}}))
    with pytest.raises(AnnotationError, match="obj.json: 'annotations' must be a list, got dict"):
        CocoInstances(as_object)
    binary = tmp_path / "bin.json"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(AnnotationError, match="bin.json: not a JSON text file"):
        CocoInstances(binary)
    huge = _coco(tmp_path, [GOOD], images=[{"id": 1, "file_name": "x.jpg", "height": 100000, "width": 100000}])
    with pytest.raises(AnnotationError, match=r"image 1 is 100000 x 100000 = 10,000,000,000 pixels, over the"):
        CocoInstances(huge)
    skipped = CocoInstances(huge, on_error="skip")
    with pytest.warns(UserWarning, match="image_too_large 2"):
        assert list(skipped) == [] and skipped.skipped == {"image_too_large": 2}


def test_truncated_image_names_the_file(synthetic, tmp_path):
    import shutil

    from maskrep.data.detection import DetectionDataset

    ann, images = synthetic["val"]
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    first = min(copy.iterdir())
    first.write_bytes(first.read_bytes()[:200])
    ds = DetectionDataset(ann, copy, min_size=64, max_size=100)
    with pytest.raises(OSError, match=f"instances_val.json: image 1: .*{first.name}: cannot read the image"):
        ds[0]


# ---- the command line -----------------------------------------------------------------------------

def test_version_help_and_option_order(synthetic, tmp_path, capsys):
    from maskrep import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"maskrep {__version__}"
    for command in ("synth", "demo", "fit", "reconstruct", "train", "eval", "predict", "convert"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert description.strip().endswith(".") and len(description.strip()) > 20, command
    # options may stand between overrides
    ann, images = synthetic["train"]
    assert main(["train", "--config", TINY, "solver.max_iter=1", "--data", ann, images, "data.num_images=2",
                 "--out", str(tmp_path / "r"), "--no-resume"]) == 0


def test_errors_are_one_line_unless_debug(synthetic, capsys):
    assert main(["reconstruct", "--codec", "pcaa", "--annotations", synthetic["val"][0]]) == 2
    assert capsys.readouterr().err == ("maskrep: error: unknown codec 'pcaa'; valid names: bitmap, contour, dct, learned, "
                                       "pca, polar, svd (a plugin's codecs are found through the 'maskrep.codecs' "
                                       "entry-point group of its installed package)\n")
    with pytest.raises(KeyError):
        main(["--debug", "reconstruct", "--codec", "pcaa", "--annotations", synthetic["val"][0]])
