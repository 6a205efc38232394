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
    with pytest.raises(ValueError, match="dim must be an integer \\[1, 64\\], got 65"):
        PCACodec(mask_size=8, dim=65)


def _adelaidet_file(tmp_path, name, k=6, s=8, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(s * s, s * s)))
    var = np.sort(rng.uniform(0.5, 4, k))[::-1].astype(np.float32)
    path = tmp_path / name
    np.savez(path, components_c=q[:, :k].T[None].astype(np.float32), mean_c=rng.normal(size=(1, s * s)).astype(np.float32),
             ratio_c=(var / var.sum())[None], explained_variance_c=var[None])
    return path


def test_load_reads_adelaidet_files_without_claiming_fit_settings(tmp_path):
    import warnings

    from maskrep.codecs import load

    path = _adelaidet_file(tmp_path, "coco_2017_train_class_agnosticTrue_whitenFalse_sigmoidTrue_6.npz")
    codec = load(path)
    assert isinstance(codec, PCACodec)
    assert codec.params == {"mask_size": 8, "dim": 6, "whiten": False, "sigmoid": True, "jitter": None, "seed": None}
    with pytest.raises(ValueError, match="fitting settings are unknown"):
        codec.fit(_masks(50, 8))
    # a name that states nothing: MEInst's defaults, said out loud
    plain = _adelaidet_file(tmp_path, "matrix.npz")
    with pytest.warns(UserWarning) as record:
        codec = load(plain)
    assert [str(w.message).split(": ", 1)[1] for w in record] == [
        f"the file name does not state {f}True/False; using MEInst's default {f}=True (pass {f}= to say otherwise)"
        for f in ("whiten", "sigmoid")]
    assert codec.whiten and codec.sigmoid
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not PCACodec.load_adelaidet(plain, whiten=False, sigmoid=False).whiten  # the caller's word wins
    # saved again by maskrep, the unknowns stay unknown
    codec.save(tmp_path / "again.npz")
    assert load(tmp_path / "again.npz").params["seed"] is None


def test_bad_codec_files_name_the_file_and_the_problem(tmp_path):
    from maskrep.codecs import load

    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.npz: not a codec file \(an \.npz of plain arrays\)"):
        load(text)
    nan = _adelaidet_file(tmp_path, "nan_whitenTrue_sigmoidTrue.npz")
    with np.load(nan) as f:
        arrays = dict(f)
    arrays["components_c"][0, 0, 0] = np.nan
    np.savez(nan, **arrays)
    with pytest.raises(ValueError, match=r"nan_whitenTrue_sigmoidTrue\.npz: array 'components_c' holds 1 non-finite"):
        load(nan)
    bad_header = tmp_path / "header.npz"
    np.savez(bad_header, maskrep_codec=np.array("{not json"), components=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"header\.npz: the maskrep_codec header is not JSON"):
        load(bad_header)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: neither a maskrep codec .* nor an AdelaiDet PCA file"):
        load(other)
    short = tmp_path / "short_whitenTrue_sigmoidTrue.npz"
    np.savez(short, components_c=np.zeros((1, 3, 16), np.float32), mean_c=np.zeros((1, 9), np.float32),
             explained_variance_c=np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"short_whitenTrue_sigmoidTrue\.npz: mean has shape \(9,\), expected \(16,\)"):
        load(short)


def test_meinst_jittered_evaluation(synthetic):
    from maskrep.data import CocoInstances, crop_instances
    from maskrep.engine import evaluate_reconstruction

    insts = list(CocoInstances(synthetic["val"][0]))
    codec = PCACodec(mask_size=14, dim=12).fit(crop_instances(list(CocoInstances(synthetic["train"][0])), 14))
    a = evaluate_reconstruction(codec, insts, full_image=False, progress=False, meinst_jitter_seed=5)
    b = evaluate_reconstruction(codec, insts, full_image=False, progress=False, meinst_jitter_seed=5)
    c = evaluate_reconstruction(codec, insts, full_image=False, progress=False, meinst_jitter_seed=6)
    plain = evaluate_reconstruction(codec, insts, full_image=False, progress=False)
    assert a["pooled_miou"] == b["pooled_miou"] and a["meinst_jitter_seed"] == 5
    assert a["pooled_miou"] != c["pooled_miou"] and "meinst_jitter_seed" not in plain
    # by hand: MEInst's confusion-matrix mIoU over jittered encodings
    crops = crop_instances(insts, 14)
    pred = codec.decode(codec.encode_jittered(crops, np.random.default_rng(5))) >= 0.5
    tp, fp = (pred & crops).sum(), (pred & ~crops).sum()
    fn, tn = (~pred & crops).sum(), (~pred & ~crops).sum()
    assert a["pooled_miou"] == pytest.approx((tp / (tp + fp + fn) + tn / (tn + fp + fn)) / 2)
    with pytest.raises(ValueError, match="applies to the pca codec, not 'svd'"):
        from maskrep.codecs import SVDCodec

        evaluate_reconstruction(SVDCodec(), insts, meinst_jitter_seed=1)


def test_cooccurrences_are_exact_on_both_paths(monkeypatch):
    from maskrep.codecs import pca

    b = np.random.default_rng(0).random((1003, 37)) < 0.4  # sizes that are not multiples of 8
    expected = b.astype(np.int64).T @ b.astype(np.int64)
    assert np.array_equal(pca._cooccurrences(b), expected)

    def unavailable(*args):
        raise RuntimeError("no int8 product here")

    monkeypatch.setattr(pca.torch, "_int_mm", unavailable)
    assert np.array_equal(pca._cooccurrences(b), expected)  # the float32 fallback, exact below 2**24 rows


def test_no_jitter_statistics_equal_the_logit_vectors():
    masks = _masks(300)
    codec = PCACodec(mask_size=10, dim=6, jitter="none").fit(masks)
    u = np.where(masks.reshape(300, -1), MEAN_JITTER_LOGIT, -MEAN_JITTER_LOGIT)  # what MEInst fits without jitter
    ref = PCA(n_components=6, svd_solver="full").fit(u)
    np.testing.assert_allclose(codec.state_dict()["explained_variance"], ref.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(np.abs(codec.state_dict()["components"] @ ref.components_.T), np.eye(6), atol=1e-4)


def test_expected_jitter_is_the_limit_of_sampled_draws():
    """The analytic fit agrees with one sampled fit over many copies of the masks (fresh jitter each)."""
    masks = _masks(60)
    expected = PCACodec(mask_size=10, dim=5, jitter="expected").fit(masks).state_dict()
    many = np.concatenate([masks] * 400)  # 24,000 masks, each copy jittered anew
    sampled = PCACodec(mask_size=10, dim=5, jitter="sample", seed=1).fit(many).state_dict()
    np.testing.assert_allclose(sampled["explained_variance"], expected["explained_variance"], rtol=0.02)
    cos = np.abs(expected["components"] @ sampled["components"].T).diagonal()
    assert cos.min() > 0.995
    assert PCACodec(jitter=True).jitter == "sample" and PCACodec(jitter=False).jitter == "none"  # older files
    with pytest.raises(ValueError, match="jitter must be one of expected, sample, none, got 'random'"):
        PCACodec(jitter="random")


def test_one_big_array_is_fitted_in_slices(monkeypatch):
    from maskrep.codecs import base

    seen = []
    monkeypatch.setattr(base, "FIT_CHUNK", 64)
    codec = PCACodec(mask_size=10, dim=4)
    original = codec._fit

    def spy(chunks, progress):
        return original((seen.append(len(c)) or c for c in chunks), progress)

    codec._fit = spy
    codec.fit(_masks(150))
    assert seen == [64, 64, 22]


def _fit_shard(rank, world, port, masks, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        codec = PCACodec(mask_size=10, dim=6).fit(masks[rank::world])
        if rank == 0:
            codec.save(out)
    finally:
        dist.destroy_process_group()


def test_two_processes_fit_the_matrix_of_one(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from maskrep.codecs import load

    masks = _masks(500, seed=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two.npz"
    mp.spawn(_fit_shard, args=(2, port, masks, str(out)), nprocs=2)
    one = PCACodec(mask_size=10, dim=6).fit(masks).state_dict()
    two = load(out).state_dict()
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])  # integer statistics: the same matrix, bit for bit
