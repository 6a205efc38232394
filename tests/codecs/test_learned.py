import numpy as np
import pytest
import torch

from maskrep.codecs import LearnedCodec, load
from maskrep.codecs import learned as learned_mod

SETTINGS = {"mask_size": 16, "dim": 6, "width": 4, "epochs": 3, "batch_size": 16}


def _masks(n=48, s=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    out = np.zeros((n, s, s), bool)
    for i in range(n):
        cy, cx = rng.uniform(4, s - 4, 2)
        ry, rx = rng.uniform(2, s / 2, 2)
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return out


def _weights(codec):
    return {k: v.copy() for k, v in codec.state_dict().items()}


def test_fit_is_repeatable_and_the_module_frozen():
    masks = _masks()
    a, b = LearnedCodec(**SETTINGS).fit(masks), LearnedCodec(**SETTINGS).fit(masks)
    for key, value in _weights(a).items():
        np.testing.assert_array_equal(value, b.state_dict()[key])
    assert len(a.history) == 3 and all(np.isfinite(a.history))
    module = a.module()
    assert not any(p.requires_grad for p in module.parameters())  # a fitted codec is a fixed function
    codes = torch.from_numpy(a.encode(masks[:2])).requires_grad_(True)
    module(codes).sum().backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0  # differentiable in the codes


def test_training_learns_the_shapes():
    masks = _masks(200, seed=1)
    codec = LearnedCodec(mask_size=16, dim=8, width=8, epochs=40, batch_size=50, lr=5e-3, shift=0.0).fit(masks)
    assert codec.history[-1] < 0.5 * codec.history[0]
    iou = ((codec.decode(codec.encode(masks)) >= 0.5) & masks).sum((1, 2)) / ((codec.decode(codec.encode(masks)) >= 0.5) | masks).sum((1, 2))
    assert iou.mean() > 0.8


def test_interrupted_fit_resumes_to_the_same_weights(tmp_path, monkeypatch):
    masks = _masks()
    straight = LearnedCodec(**SETTINGS).fit(masks)
    ckpt = tmp_path / "learned.npz.training.pt"
    codec = LearnedCodec(**SETTINGS)
    calls = {"n": 0}
    original = learned_mod._loss

    def failing_loss(logits, target):
        calls["n"] += 1
        if calls["n"] == 7:  # in the third epoch (3 steps an epoch)
            raise KeyboardInterrupt
        return original(logits, target)

    monkeypatch.setattr(learned_mod, "_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        codec.fit(masks, checkpoint=ckpt)
    assert ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(learned_mod, "_loss", original)
    resumed = LearnedCodec(**SETTINGS)
    resumed.fit(masks, checkpoint=ckpt)
    assert not ckpt.exists()  # a completed fit removes its training state
    for key, value in _weights(straight).items():
        np.testing.assert_array_equal(value, resumed.state_dict()[key])
    assert resumed.history == straight.history


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    masks = _masks()
    ckpt = tmp_path / "c.pt"
    codec = LearnedCodec(**SETTINGS)
    other = LearnedCodec(**{**SETTINGS, "width": 8})
    torch.save({"params": other.params, "fingerprint": "x", "epoch": 1}, ckpt)
    with pytest.raises(ValueError, match="training state of other settings or other masks; remove it"):
        codec.fit(masks, checkpoint=ckpt)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="not a readable training checkpoint"):
        codec.fit(masks, checkpoint=ckpt)


def test_capabilities_are_declared():
    from maskrep.codecs import CAPABILITIES, PCACodec, get_codec, list_codecs

    for name in list_codecs():
        assert get_codec(name).capabilities <= set(CAPABILITIES), name
    assert LearnedCodec(**SETTINGS).capabilities == {"resume"}
    assert PCACodec(mask_size=8, dim=4).capabilities == {"jitter"}
    assert PCACodec(mask_size=8, dim=4, sigmoid=False).capabilities == set()
    with pytest.raises(ValueError, match="keeps no training state"):
        PCACodec(mask_size=8, dim=4).fit(np.zeros((10, 8, 8), bool), checkpoint="x.pt")


def test_save_load_and_bad_files(tmp_path):
    codec = LearnedCodec(**SETTINGS).fit(_masks())
    path = tmp_path / "learned.npz"
    codec.save(path)
    again = load(path)
    np.testing.assert_array_equal(again.encode(_masks(4)), codec.encode(_masks(4)))
    state = dict(codec.state_dict())
    state.pop(next(iter(state)))
    with pytest.raises(ValueError, match="the learned codec's weights lack"):
        LearnedCodec(**SETTINGS).load_state_dict(state)


def test_bad_parameters():
    with pytest.raises(ValueError, match="lr must be a positive number"):
        LearnedCodec(lr=0)
    with pytest.raises(ValueError, match=r"shift must be in \[0, 0.5\)"):
        LearnedCodec(shift=0.7)
    with pytest.raises(ValueError, match="at least 2 masks"):
        LearnedCodec(**SETTINGS).fit(np.zeros((1, 16, 16), bool))


def test_ctrl_c_keeps_the_state_mid_epoch_and_the_rerun_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import signal

    masks = _masks()
    straight = LearnedCodec(**SETTINGS).fit(masks)
    ckpt = tmp_path / "learned.npz.training.pt"
    calls = {"n": 0}
    original = learned_mod._loss

    def ctrl_c(logits, target):
        calls["n"] += 1
        if calls["n"] == 5:  # second epoch, second of its 3 steps: the signal arrives mid-step
            signal.raise_signal(signal.SIGINT)
        return original(logits, target)

    monkeypatch.setattr(learned_mod, "_loss", ctrl_c)
    with pytest.raises(KeyboardInterrupt, match="stopped at epoch 2, step 2; rerun to resume"):
        LearnedCodec(**SETTINGS).fit(masks, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)  # the step the signal arrived in was finished
    monkeypatch.setattr(learned_mod, "_loss", original)
    resumed = LearnedCodec(**SETTINGS).fit(masks, checkpoint=ckpt)
    for key, value in _weights(straight).items():
        np.testing.assert_array_equal(value, resumed.state_dict()[key])
    assert resumed.history == straight.history and not ckpt.exists()
