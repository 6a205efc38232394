"""Training engine: exact resume, DDP on gloo, the non-finite guard, checkpoints, config overrides."""

import json
import os
import socket

import pytest
import torch

from maskrep.engine.recipe import apply_overrides, base_config, load_config, train
from maskrep.engine.trainer import load_checkpoint, save_checkpoint, warmup_step_lr

TINY = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "fcos", "fcos_tiny.py")


def _cfg(synthetic, out, **solver):
    cfg, module = load_config(TINY)
    cfg["data"]["train"] = cfg["data"]["val"] = synthetic["train"]
    cfg["data"]["num_images"] = 4
    cfg["out_dir"] = str(out)
    cfg["solver"].update(solver)
    return cfg, module


def _losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return {r["iteration"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_resume_repeats_the_uninterrupted_run(synthetic, tmp_path):
    full = tmp_path / "full"
    train(*_cfg(synthetic, full, max_iter=6), resume=False, progress=False)
    part = tmp_path / "part"
    train(*_cfg(synthetic, part, max_iter=3), resume=False, progress=False)
    result = train(*_cfg(synthetic, part, max_iter=6), resume=True, progress=False)
    assert result["iterations"] == 6
    a, b = _losses(full), _losses(part)
    assert sorted(a) == list(range(1, 7)) and sorted(b) == list(range(1, 7))
    assert [a[i] for i in range(1, 7)] == [b[i] for i in range(1, 7)]
    # and the final weights agree exactly
    sa = torch.load(full / "model_final.pth", weights_only=True)["model"]
    sb = torch.load(part / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (full / "coco_eval.json").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train(cfg, None, resume=False, progress=False)
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_two_processes_equal_one_process(synthetic, tmp_path):
    """Two gloo processes with one image each step like one process with both images."""
    cfg_ddp, _ = _cfg(synthetic, tmp_path / "ddp", max_iter=3)
    cfg_one, module = _cfg(synthetic, tmp_path / "one", max_iter=3)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg_ddp), nprocs=2, join=True)
    train(cfg_one, module, resume=False, progress=False)
    sa = torch.load(tmp_path / "ddp" / "model_final.pth", weights_only=True)["model"]
    sb = torch.load(tmp_path / "one" / "model_final.pth", weights_only=True)["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5, msg=k)
    la, lb = _losses(tmp_path / "ddp"), _losses(tmp_path / "one")
    assert la[1] == pytest.approx(lb[1], rel=1e-5)  # logged losses are averaged over the processes
    assert not any(sa[k].equal(torch.zeros_like(sa[k])) for k in ("fcos.head.cls_logits.weight",))


def test_non_finite_loss_stops_with_a_message(synthetic, tmp_path):
    cfg, module = _cfg(synthetic, tmp_path / "nan", max_iter=4, lr=1e30, warmup_iters=0, clip_grad=None)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration \d: .* no checkpoint was written yet"):
        train(cfg, module, resume=False, progress=False)
    cfg["solver"]["lr"] = float("nan")  # refused before anything runs
    with pytest.raises(ValueError, match="solver.lr = nan must be a number > 0"):
        train(cfg, module, resume=False, progress=False)


def test_checkpoint_roundtrip_is_atomic_and_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = warmup_step_lr(opt, warmup_iters=2, steps=(3,))
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    sched.step()
    path = str(tmp_path / "ck.pth")
    save_checkpoint(path, model, opt, sched, iteration=7)
    assert os.listdir(tmp_path) == ["ck.pth"]  # no temporary left behind
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(999)
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = warmup_step_lr(opt2, warmup_iters=2, steps=(3,))
    assert load_checkpoint(path, model2, opt2, sched2) == 7
    assert torch.equal(model.weight, model2.weight)
    assert sched2.last_epoch == 1 and opt2.state_dict()["state"][0]["momentum_buffer"] is not None
    del expected


def test_warmup_and_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_step_lr(opt, warmup_iters=4, warmup_factor=0.2, steps=(6, 8), gamma=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_overrides():
    cfg = apply_overrides(base_config(), ["solver.lr=0.02", "data.min_size_train=(640, 800)", "out_dir=/tmp/x"])
    assert cfg["solver"]["lr"] == 0.02 and cfg["data"]["min_size_train"] == (640, 800) and cfg["out_dir"] == "/tmp/x"
    with pytest.raises(KeyError, match="unknown key 'lr_typo'"):
        apply_overrides(base_config(), ["solver.lr_typo=1"])
    with pytest.raises(ValueError, match="must look like"):
        apply_overrides(base_config(), ["solver.lr"])


def test_data_paths_come_from_the_config_or_the_environment(monkeypatch):
    from maskrep.engine.recipe import data_paths

    cfg = base_config()
    monkeypatch.delenv("MASKREP_DATASETS", raising=False)
    with pytest.raises(ValueError, match=r"data\.train = '\$\{MASKREP_DATASETS\}/coco/annotations/instances_train2017\.json' "
                                         r"needs \$\{MASKREP_DATASETS\}, which is not set"):
        data_paths(cfg, "train")
    monkeypatch.setenv("MASKREP_DATASETS", "/data")
    assert data_paths(cfg, "val") == ("/data/coco/annotations/instances_val2017.json", "/data/coco/val2017")
