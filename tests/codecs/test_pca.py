import numpy as np
import pytest
from sklearn.decomposition import PCA

from maskrep.codecs import PCACodec
from maskrep.codecs.pca import MEAN_JITTER_LOGIT, jitter_logits


def _masks(n, s=10, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((n, s, s))
    return base < np.linspace(0.2, 0.8, s)[None, None, :]


def test_matches_sklearn_exact_pca():
    masks = _masks(400)
    codec = PCACodec(mask_size=10, dim=8, sigmoid=False).fit(masks)
    ref = PCA(n_components=8, svd_solver="full").fit(masks.reshape(400, -1).astype(np.float64))
    state = codec.state_dict()
    np.testing.assert_allclose(state["explained_variance"], ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(state["ratio"], ref.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(state["mean"], ref.mean_, atol=1e-6)
    # same subspace, signs fixed by our rule
    np.testing.assert_allclose(np.abs(state["components"] @ ref.components_.T), np.eye(8), atol=1e-3)
    lead = np.abs(state["components"]).argmax(1)
    assert (state["components"][np.arange(8), lead] > 0).all()


def test_streaming_equals_one_shot_and_seeded():
    masks = _masks(500)
    one = PCACodec(mask_size=10, dim=6, seed=3).fit(masks)
    chunks = PCACodec(mask_size=10, dim=6, seed=3).fit(iter([masks[:123], masks[123:400], masks[400:]]))
    # the jitter is drawn chunk by chunk from one generator, so element draws line up only for the
    # same chunking; the fitted statistics still agree closely
    np.testing.assert_allclose(one.state_dict()["mean"], chunks.state_dict()["mean"], atol=0.05)
    again = PCACodec(mask_size=10, dim=6, seed=3).fit(masks)
    for k, v in one.state_dict().items():
        np.testing.assert_array_equal(v, again.state_dict()[k])
    exact = PCACodec(mask_size=10, dim=6, jitter=False).fit(masks)
    exact_chunks = PCACodec(mask_size=10, dim=6, jitter=False).fit(iter([masks[:77], masks[77:]]))
    for k, v in exact.state_dict().items():
        np.testing.assert_allclose(v, exact_chunks.state_dict()[k], rtol=1e-5, atol=1e-6)


def test_whitening_and_formulas():
    masks = _masks(300)
    for whiten in (True, False):
        codec = PCACodec(mask_size=10, dim=5, whiten=whiten, jitter=False).fit(masks)
        s = codec.state_dict()
        u = np.where(masks[:4].reshape(4, -1), MEAN_JITTER_LOGIT, -MEAN_JITTER_LOGIT)
        v = (u - s["mean"]) @ s["components"].T
        if whiten:
            v = v / np.sqrt(s["explained_variance"])
        np.testing.assert_allclose(codec.encode(masks[:4]), v, rtol=1e-4, atol=1e-4)
        scale = np.sqrt(s["explained_variance"]) if whiten else 1.0
        logits = (v * scale) @ s["components"] + s["mean"]
        np.testing.assert_allclose(codec.decode(v.astype(np.float32)).reshape(4, -1), 1 / (1 + np.exp(-logits)), atol=1e-5)
    whitened = PCACodec(mask_size=10, dim=5, jitter=False).fit(masks).encode(masks)
    np.testing.assert_allclose(whitened.var(0, ddof=1), 1.0, rtol=0.02)


def test_jitter_range():
    logits = jitter_logits(np.array([[True, False]] * 5000), np.random.default_rng(0))
    fg, bg = logits[:, 0], logits[:, 1]
    assert fg.min() > 2.94 and fg.max() <= 4.5952 and bg.max() < -2.94
    assert np.mean(np.isclose(fg, np.log(99), atol=1e-4)) == pytest.approx(0.2, abs=0.02)
    assert abs(fg.mean() - MEAN_JITTER_LOGIT) < 0.02


def test_adelaidet_format_round_trip(tmp_path):
    """A file in AdelaiDet's layout, written independently of maskrep, loads and decodes identically."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    components = q[:, :12].T.astype(np.float32)  # (K, S*S) orthonormal rows
    mean = rng.normal(size=64).astype(np.float32)
    var = np.sort(rng.uniform(0.5, 4, 12))[::-1].astype(np.float32)
    path = tmp_path / "coco_2017_train_class_agnosticTrue_whitenTrue_sigmoidTrue_12.npz"
    np.savez(path, components_c=components[None], mean_c=mean[None], ratio_c=(var / var.sum())[None],
             explained_variance_c=var[None])
    codec = PCACodec.load_adelaidet(path)
    assert (codec.mask_size, codec.code_length) == (8, 12)
    codes = rng.normal(size=(5, 12)).astype(np.float32)
    expected = 1 / (1 + np.exp(-((codes * np.sqrt(var)) @ components + mean)))  # MEInst decode
    np.testing.assert_allclose(codec.decode(codes).reshape(5, -1), expected, rtol=1e-5, atol=1e-6)
    # and ours load there: save_adelaidet writes exactly the four arrays with their shapes
    out = tmp_path / "ours.npz"
    codec.save_adelaidet(out)
    with np.load(out) as f:
        assert sorted(f.files) == ["components_c", "explained_variance_c", "mean_c", "ratio_c"]
        assert f["components_c"].shape == (1, 12, 64) and f["components_c"].dtype == np.float32
        np.testing.assert_array_equal(f["components_c"][0], components)


def test_bad_dim():
    with pytest.raises(ValueError, match="dim must be in \\[1, 64\\], got 65"):
        PCACodec(mask_size=8, dim=65)
