"""What trips a new user: training and the command line as a user expects them, and bad input that
must be refused in one line."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from maskrep.cli import main

TINY = str(Path(__file__).resolve().parents[1] / "experiments" / "fcos" / "fcos_tiny.py")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_take_the_umasks_mode(tmp_path, umask, mode):
    from maskrep._io import atomic_write_json
    from maskrep.codecs import get_codec

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        codec = get_codec("svd", mask_size=6, rank=2)
        codec.save(tmp_path / "c.npz")
    finally:
        os.umask(old)
    for name in ("r.json", "c.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


def _train_args(synthetic, out, *more):
    ann, images = synthetic["train"]
    return ["train", "--config", TINY, "--data", ann, images, "--out", str(out), "data.num_images=2",
            "solver.warmup_iters=1", "model.fcos.score_thresh=0.0", *more]


def test_train_prints_its_summaries_and_a_finished_run_says_so(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=2")) == 0
    text = capsys.readouterr().out
    assert "bbox:\n Average Precision  (AP) @[ IoU=0.50:0.95" in text
    stamp = os.stat(out / "last_checkpoint.pth").st_mtime_ns
    assert main(_train_args(synthetic, out, "solver.max_iter=2")) == 0
    text = capsys.readouterr().out
    assert "is complete (2 iterations)" in text and "Average Precision" in text and "resumed" not in text
    assert os.stat(out / "last_checkpoint.pth").st_mtime_ns == stamp  # nothing retrained, nothing rewritten
    eval_stamp = os.stat(out / "coco_eval.json").st_mtime_ns
    assert main([*_train_args(synthetic, out, "solver.max_iter=2"), "--eval"]) == 0
    assert os.stat(out / "coco_eval.json").st_mtime_ns != eval_stamp and "is complete" not in capsys.readouterr().out


def test_warmup_longer_than_the_run_is_warned(synthetic, tmp_path):
    ann, images = synthetic["train"]
    with pytest.warns(UserWarning, match=r"solver.max_iter=1 is below solver.warmup_iters=2: the learning rate"):
        main(["train", "--config", TINY, "--data", ann, images, "--out", str(tmp_path / "r"), "data.num_images=2",
              "solver.max_iter=1", "solver.warmup_iters=2"])


def test_train_help_shows_override_examples(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "solver.max_iter=20000" in text and "out_dir=" in text


def test_predict_takes_image_and_category_ids_from_the_annotations(synthetic, tmp_path, capsys):
    import json

    ann, images = synthetic["train"]
    out = tmp_path / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=1")) == 0
    doc = json.loads(Path(ann).read_text())
    picked = [doc["images"][3], doc["images"][1]]
    inputs = [str(Path(images) / im["file_name"]) for im in picked]
    results = tmp_path / "r.json"
    assert main(["predict", "--checkpoint", str(out / "model_final.pth"), "--input", *inputs, "--output",
                 str(tmp_path / "pics"), "--json", str(results), "--score-thresh", "0", "--annotations", ann]) == 0
    rows = json.loads(results.read_text())
    by_file = {im["file_name"]: im["id"] for im in picked}
    assert rows and all(r["image_id"] == by_file[r["file_name"]] for r in rows)
    assert {r["category_id"] for r in rows} <= {c["id"] for c in doc["categories"]}
    assert {r["image_id"] for r in rows} == set(by_file.values())
    # an input the file does not hold is named before any work
    stray = tmp_path / "stray.jpg"
    stray.write_bytes(Path(inputs[0]).read_bytes())
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out / "model_final.pth"), "--input", str(stray), "--output",
                 str(tmp_path / "p2"), "--json", str(tmp_path / "r2.json"), "--annotations", ann]) == 2
    assert "has no image named stray.jpg" in capsys.readouterr().err and not (tmp_path / "r2.json").exists()


def test_torchvision_backbone_weights_come_from_the_cache_and_are_checked(tmp_path, monkeypatch):
    import hashlib

    import torch

    from maskrep.detection import ResNet, load_backbone_weights
    from maskrep.detection import weights as weights_mod

    monkeypatch.setenv("MASKREP_CACHE", str(tmp_path / "cache"))
    src = ResNet(depth=18, width=8)
    with torch.no_grad():
        for p in src.parameters():
            p.uniform_(-1, 1)
    blob = tmp_path / "w.pth"
    torch.save(src.state_dict(), blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()[:8]
    url = f"https://example.invalid/models/resnet18-{digest}.pth"
    monkeypatch.setitem(weights_mod.TORCHVISION_RESNETS, "resnet18", url)
    # offline and not in the cache: one line naming the URL and where to put the file
    target = tmp_path / "cache" / "weights" / f"resnet18-{digest}.pth"
    with pytest.raises(FileNotFoundError, match=f"cannot download {url} .*put the file at {target}"):
        load_backbone_weights(ResNet(depth=18, width=8), "torchvision://resnet18")
    target.parent.mkdir(parents=True)
    target.write_bytes(blob.read_bytes())
    model = ResNet(depth=18, width=8)
    assert load_backbone_weights(model, "torchvision://resnet18") == []
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values()))
    target.write_bytes(blob.read_bytes()[:-10] + b"0123456789")  # a damaged file is refused
    with pytest.raises(ValueError, match="SHA-256 starts"):
        load_backbone_weights(ResNet(depth=18, width=8), "torchvision://resnet18")
    with pytest.raises(ValueError, match="unknown weights 'torchvision://resnet19'"):
        load_backbone_weights(ResNet(depth=18, width=8), "torchvision://resnet19")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data is a stub)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    """A tiny model trained one step (FCOS only), its checkpoint and two good images."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=1")) == 0
    images = sorted(Path(synthetic["train"][1]).glob("*.jpg"))[:2]
    return out / "model_final.pth", images


def test_predict_skips_bad_images_lists_them_and_fails_at_the_end(trained, tmp_path, capsys):
    import json

    ckpt, (good1, good2) = trained
    bomb, broken = tmp_path / "bomb.png", tmp_path / "broken.jpg"
    bomb.write_bytes(_png_header(100000, 100000))
    broken.write_bytes(b"not an image")
    other = tmp_path / "other"
    other.mkdir()
    twin = other / good1.name  # a second input of the same file name
    twin.write_bytes(good2.read_bytes())
    capsys.readouterr()
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(good1), str(bomb), str(broken), str(twin),
                 str(good2), "--output", str(tmp_path / "pics"), "--json", str(tmp_path / "r.json"),
                 "--score-thresh", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"skipped {bomb}: the image header claims 10,000,000,000 pixels, over the" in err
    assert f"skipped {broken}: cannot read the image" in err and "2 of 5 images could not be read" in err
    rows = json.loads((tmp_path / "r.json").read_text())  # the good images' results are written
    assert {r["image_id"] for r in rows} <= {1, 4, 5} and rows
    pictures = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert pictures == sorted([f"{good1.stem}.png", f"{good1.stem}-2.png", f"{good2.stem}.png"])


def test_predict_refuses_folders_and_foreign_checkpoints_in_its_own_words(trained, tmp_path, capsys):
    import torch

    ckpt, (good, _) = trained
    out = str(tmp_path / "pics")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(good.parent), "--output", out]) == 2
    assert "is a folder, not an image: pass the images in it" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    assert main(["predict", "--checkpoint", str(junk), "--input", str(good), "--output", out]) == 2
    err = capsys.readouterr().err
    assert "junk.pth: not a readable checkpoint" in err and "--no-resume" not in err
    bare = tmp_path / "bare.pth"
    torch.save({"model": torch.load(ckpt, weights_only=True)["model"]}, bare)  # weights without a config
    assert main(["predict", "--checkpoint", str(bare), "--input", str(good), "--output", out]) == 2
    err = capsys.readouterr().err
    assert "carries no config; predict needs a checkpoint written by maskrep train" in err and "--config" not in err


def test_eval_with_the_config_of_another_head_names_both(synthetic, trained, tmp_path, capsys):
    ckpt, _ = trained
    config = str(Path(__file__).resolve().parents[1] / "experiments" / "blendmask" / "blendmask_R_18_mini8.py")
    capsys.readouterr()
    assert main(["eval", "--config", config, "--checkpoint", str(ckpt), "--data", *synthetic["val"]]) == 2
    err = capsys.readouterr().err
    assert "holds a model without a mask head, but the config builds a model with the blendmask mask head" in err
    assert "unexpected keyword" not in err


def test_a_head_setting_the_head_does_not_have_is_named():
    from maskrep.engine.recipe import build_mask_head

    with pytest.raises(ValueError, match=r"the blendmask head has no setting 'codec'; its settings: .*num_bases"):
        build_mask_head({"name": "blendmask", "codec": "svd"}, in_channels=16, num_classes=3)


def test_convert_names_every_file_it_cannot_take(trained, tmp_path, capsys):
    import pickle

    import torch

    ckpt, _ = trained

    class Payload:  # a pickle that would run code when loaded without weights_only
        def __reduce__(self):
            return (os.system, ("echo never",))

    cases = {"payload.pth": pickle.dumps(Payload()), "empty.pth": b"", "cut.pth": ckpt.read_bytes()[:500],
             "arrays.npz": None}
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    torch.save({"model": {}}, tmp_path / "nothing.pth")
    expected = {"payload.pth": "holds Python objects other than tensors, which are never run",
                "empty.pth": "the file is empty", "cut.pth": "not a readable checkpoint",
                "arrays.npz": "not a readable checkpoint", "nothing.pth": "no FCOS weights in it",
                str(ckpt): "is a maskrep checkpoint already"}
    for name, message in expected.items():
        src = name if os.path.isabs(name) else str(tmp_path / name)
        capsys.readouterr()
        assert main(["convert", "adelaidet-fcos", src, str(tmp_path / "out.pth")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"maskrep: error: {src}") and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "out.pth").exists()


def test_learned_codec_bad_states_widths_and_codes(synthetic, tmp_path, capsys):
    import torch

    from maskrep.codecs import get_codec, list_codecs

    ann = synthetic["train"][0]
    out = tmp_path / "l.npz"
    args = ["fit", "learned", "--annotations", ann, "--limit", "20", "--mask-size", "16", "--dim", "4", "--width", "4",
            "--epochs", "1", "--out", str(out)]
    for foreign in ([1, 2, 3], {"net": {}, "opt": {}}):  # a list; a dict of something else
        torch.save(foreign, str(out) + ".training.pt")
        capsys.readouterr()
        assert main(args) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar, one line
        assert last.startswith("maskrep: error: ") and "l.npz.training.pt is not the learned codec's training state" in last
    os.remove(str(out) + ".training.pt")
    assert main([*args[:-2], "--set", "width=100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "makes a network of 1," in err and "weights, over the 50,000,000" in err and not out.exists()
    # non-finite codes: refused by every codec, in one message
    rng = np.random.default_rng(0)
    masks = np.zeros((80, 16, 16), bool)
    for m, (y0, x0, y1, x1) in zip(masks, rng.integers([0, 0, 8, 8], [6, 6, 16, 16], (80, 4))):
        m[y0:y1, x0:x1] = True
    small = {"dct": {"dim": 20}, "pca": {"dim": 4}, "learned": {"dim": 4, "width": 2, "epochs": 1}}
    for name in list_codecs():
        codec = get_codec(name, mask_size=16, **small.get(name, {}))
        if codec.needs_fit:
            codec.fit(masks)
        codes = codec.encode(masks[:4])
        codes[1, 0] = np.nan
        codes[3, -1] = np.inf
        with pytest.raises(ValueError, match=r"non-finite values \(NaN or inf\) in 2 of 4 rows, e.g. row 1"):
            codec.decode(codes)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_rle_strings_and_sizes_the_readers_refuse(backend):
    from maskrep.ops import mask_to_rle, paste_masks_to_rle, polygons_to_rle, rle_counts, rle_iou, rle_to_mask

    m = np.zeros((6, 5), bool)
    m[1:4, 1:3] = True
    good = mask_to_rle(m)
    bad = {
        "cut mid-value": ({"size": [6, 5], "counts": good["counts"] + "k"}, "middle of a value"),
        "below '0'": ({"size": [6, 5], "counts": good["counts"][:2] + "!" + good["counts"][3:]}, "alphabet"),
        "past H * W": ({"size": [6, 5], "counts": [7, 6, 20]}, "add up to 33"),
        "short of H * W": ({"size": [6, 5], "counts": [7, 6, 10]}, "add up to 23"),
        "negative": ({"size": [6, 5], "counts": [7, -6, 29]}, "negative run"),
    }
    for rle, message in bad.values():
        with pytest.raises(ValueError, match=message):
            rle_iou([good], [rle], [False], backend=backend)
        with pytest.raises(ValueError, match=message):
            rle_counts([rle], [good], backend=backend)
        if isinstance(rle["counts"], str) or backend == "reference":
            with pytest.raises(ValueError, match=message.split()[-1] if "add up" not in message else "add up"):
                rle_to_mask(rle)
    # sizes: negative, or over the pixel bound, refused at once, before any allocation
    with pytest.raises(ValueError, match=r"must be non-negative, got \[-5, 32\]"):
        paste_masks_to_rle(np.ones((1, 4, 4)), np.array([[0.0, 0.0, 3.0, 3.0]]), (-5, 32), backend=backend)
    with pytest.raises(ValueError, match="must be non-negative"):
        polygons_to_rle([[[0, 0, 3, 0, 3, 3]]], -5, 32, backend=backend)
    with pytest.raises(ValueError, match=r"size \[100000, 100000\] is 10,000,000,000 pixels, over the"):
        rle_to_mask({"size": [100000, 100000], "counts": [10**10]})
    with pytest.raises(ValueError, match=r"size \[1000000, 1000000\] is 1,000,000,000,000 pixels"):
        paste_masks_to_rle(np.ones((1, 4, 4)), np.array([[0.0, 0.0, 3.0, 3.0]]), (10**6, 10**6), backend=backend)
    with pytest.raises(ValueError, match="over the"):
        rle_iou([{"size": [100000, 100000], "counts": [10**10]}], [{"size": [100000, 100000], "counts": [10**10]}],
                backend=backend)


def test_reconstruct_says_it_prepares_the_fast_paths_before_its_bar(synthetic, capsys):
    from maskrep.codecs import get_codec
    from maskrep.data import CocoInstances
    from maskrep.engine import evaluate_reconstruction

    insts = list(CocoInstances(synthetic["val"][0]))[:6]
    evaluate_reconstruction(get_codec("svd", mask_size=8, rank=2), insts, progress=True)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "reconstruct svd: preparing the fast paths (numba compiles them on first use" in text
    assert text.index("preparing the fast paths") < text.index("reconstruct svd: ", text.index("preparing") + 30)


def test_training_writes_tensorboard_events_beside_metrics_jsonl(synthetic, tmp_path):
    import json

    from maskrep.engine.events import read_events

    out = tmp_path / "run"
    assert main(_train_args(synthetic, out, "solver.max_iter=3", "solver.log_period=1")) == 0
    files = sorted(out.glob("events.out.tfevents.*"))
    assert len(files) == 1
    events = read_events(files[0])
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [(step, v) for step, v in events if "train/loss" in v]
    assert [s for s, _ in train] == [r["iteration"] for r in logged if "loss" in r] == [1, 2, 3]
    for (_, values), record in zip(train, (r for r in logged if "loss" in r)):
        assert values["train/loss"] == pytest.approx(record["loss"], rel=1e-6)
        assert values["train/lr"] == pytest.approx(record["lr"], rel=1e-6)
    final = [v for s, v in events if "eval/bbox/AP" in v]
    assert final and final[-1]["eval/bbox/AP"] == pytest.approx(logged[-1]["eval"]["bbox"]["AP"], abs=1e-6)
    # a fresh run keeps the earlier one's events aside, as a run of its own
    assert main([*_train_args(synthetic, out, "solver.max_iter=1"), "--no-resume"]) == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 1 and len(list(out.glob("previous-1/events.*"))) == 1
