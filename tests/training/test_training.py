"""Training data, augmentation geometry, loss, splits, checkpoints/resume and `cpak train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.factories import tiny_model

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from cpak_cli.core.landmarks import JOINTS  # noqa: E402
from cpak_cli.errors import CpakInputError  # noqa: E402
from cpak_cli.networks import crops  # noqa: E402
from cpak_cli.networks.model_cards import load_model  # noqa: E402
from cpak_cli.networks.models import ModelConfig, build_model  # noqa: E402
from cpak_cli.training.batches import BatchOrder, make_batch  # noqa: E402
from cpak_cli.training.checkpoints import export_checkpoint, load_checkpoint  # noqa: E402
from cpak_cli.training.datasets import array_reader, leg_samples  # noqa: E402
from cpak_cli.training.options import TrainData, TrainOptions  # noqa: E402
from cpak_cli.training.sources import fold_of, split_ids  # noqa: E402
from cpak_cli.training.trainer import dice_bce_loss, lr_at, train  # noqa: E402
from cpak_cli.training.training_crops import NO_AUGMENT, AugmentOptions, training_crop  # noqa: E402

KNEE = JOINTS["knee"]
OFFSETS = [(-50, -30), (50, -30), (-50, 30), (50, 30), (0, 0)]  # lateral at small x for the right leg


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def tiny(size: int = 64) -> ModelConfig:
    return tiny_model("knee", input_size=size)


def synth_image(seed: int, h: int = 400, w: int = 600, disc: float = 8.0):
    """Dark noisy image with one bright disc per knee landmark, both legs (standard AP display:
    patient's right on the image left, lateral = away from the midline)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.0, 0.1, size=(h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    lms: dict = {}
    boxes: dict = {}
    for side, cx in (("right", 150.0), ("left", 450.0)):
        cx += rng.uniform(-15, 15)
        cy = h / 2 + rng.uniform(-15, 15)
        pts = {}
        for k, (name, (dx, dy)) in enumerate(zip(KNEE, OFFSETS)):
            dx = -dx if side == "left" else dx
            x, y = cx + dx + rng.uniform(-4, 4), cy + dy + rng.uniform(-4, 4)
            pts[name] = (float(x), float(y))
            img[(xx - x) ** 2 + (yy - y) ** 2 <= disc**2] = 0.6 + 0.08 * k
        lms[side] = pts
        boxes[side] = {"knee": [cx - 100.0, cy - 100.0, cx + 100.0, cy + 100.0]}
    return img, lms, boxes


def synth_samples(n: int, size: int = 64):
    out = []
    for i in range(n):
        img, lms, boxes = synth_image(i)
        s, skipped = leg_samples(array_reader(img), f"img{i}", lms, boxes, "knee", KNEE, (0.2, 0.25), True, size)
        assert skipped == 0
        out += s
    return out


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("side", ["right", "left"])
def test_augmentation_keeps_discs_on_landmarks(side):
    size = 128
    radius = crops.mask_radius(size)
    samples = [s for s in synth_samples(1, size) if s.side == side]
    (s,) = samples
    assert s.mirror == (side == "left")
    aug = AugmentOptions(affine_p=1.0, intensity=False)
    grid_v, grid_u = np.mgrid[0:size, 0:size]
    checked = 0
    for seed in range(6):
        tc = training_crop(s, size, radius, aug, np.random.default_rng(seed))
        # the crop -> image affine maps the mask points back onto the true landmarks
        np.testing.assert_allclose(crops.crop_to_image(tc.points_uv, tc.matrix), s.points, atol=1e-6)
        # lateral condyle to crop-left on both legs (mirroring)
        assert tc.points_uv[0, 0] < tc.points_uv[1, 0]
        for c, (u, v) in enumerate(tc.points_uv):
            if not (radius + 10 < u < size - radius - 11 and radius + 10 < v < size - radius - 11):
                continue
            m = tc.masks[c]
            assert m.sum() > 0
            cu, cv = (m * grid_u).sum() / m.sum(), (m * grid_v).sum() / m.sum()
            assert abs(cu - u) <= 0.5 and abs(cv - v) <= 0.5
            # the image moved with the masks: the bright disc's centroid is on the point too
            win = (grid_u - u) ** 2 + (grid_v - v) ** 2 <= 9.0**2
            wgt = np.where(win, np.clip(tc.image - 0.5 * tc.image[win].max(), 0, None), 0.0)
            iu, iv = (wgt * grid_u).sum() / wgt.sum(), (wgt * grid_v).sum() / wgt.sum()
            assert abs(iu - u) <= 1.0 and abs(iv - v) <= 1.0, (seed, c, iu, iv, u, v)
            checked += 1
    assert checked >= 10


def test_no_augment_crop_equals_box_crop():
    size = 64
    (s, _) = synth_samples(1, size)
    tc = training_crop(s, size, 2.0, NO_AUGMENT, np.random.default_rng(0))
    np.testing.assert_allclose(tc.matrix, crops.crop_matrix(s.box, size, mirror=s.mirror))
    np.testing.assert_allclose(tc.points_uv, crops.image_to_crop(s.points, tc.matrix))


def test_batches_are_deterministic_and_shaped():
    samples = synth_samples(2)
    order = BatchOrder(len(samples), 3, seed=5)
    assert order.indices(7) == BatchOrder(len(samples), 3, seed=5).indices(7)
    seen = [i for st in range(4) for i in order.indices(st)][:8]
    assert sorted(seen[:4]) == [0, 1, 2, 3]  # one epoch = a permutation
    x1, y1 = make_batch(samples, order.indices(1), 64, 2.0, AugmentOptions(), 5, 1)
    x2, y2 = make_batch(samples, order.indices(1), 64, 2.0, AugmentOptions(), 5, 1)
    assert x1.shape == (3, 3, 64, 64) and y1.shape == (3, 5, 64, 64)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.min() >= 0 and x1.max() <= 1 and np.array_equal(x1[:, 0], x1[:, 2])


# ----------------------------------------------------------------------------- splits / schedule


def test_kfold_split_disjoint_and_covering():
    ids = [f"case{i:03d}" for i in range(23)]
    vals = []
    for f in range(5):
        tr, va = split_ids(ids, folds=5, fold=f)
        assert not set(tr) & set(va) and set(tr) | set(va) == set(ids)
        vals.append(set(va))
    assert set().union(*vals) == set(ids) and sum(len(v) for v in vals) == len(ids)
    assert all(4 <= len(v) <= 5 for v in vals)
    assert fold_of(ids, 5) == fold_of(list(reversed(ids)), 5)  # order independent
    tr, va = split_ids(ids, val_fraction=0.15)
    assert len(va) == 3 and not set(tr) & set(va) and split_ids(ids, 0.15) == (tr, va)
    assert split_ids(ids[:2], 0.15)[1] and split_ids(ids, 0.0)[1] == []


def test_lr_schedule():
    opts = TrainOptions(steps=100, lr=1e-3, warmup_steps=10)
    lrs = [lr_at(s, opts) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] >= 1e-5


# ----------------------------------------------------------------------------- loss / training


def test_loss_decreases_on_fixed_batch():
    cfg = tiny()
    samples = synth_samples(1)
    x, y = make_batch(samples, [0, 1], 64, cfg.mask_radius, NO_AUGMENT, 0, 0)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = dice_bce_loss(model(xt), yt)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    perfect = dice_bce_loss(torch.where(yt > 0, 30.0, -30.0), yt)
    assert float(perfect) < 1e-3


def _opts(out: Path, **kw) -> TrainOptions:
    base = dict(out_dir=str(out), steps=4, batch_size=2, lr=1e-3, eval_every=2, checkpoint_every=1, workers=1,
                val_fraction=0.25, device="cpu", warmup_steps=0)
    base.update(kw)
    return TrainOptions(**base)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = tiny()
    data = TrainData(samples=synth_samples(4))
    full = train(cfg, data, _opts(tmp_path / "a"), progress=False)
    assert full.steps_done == 4 and not full.interrupted and full.n_val_images == 1
    part = train(cfg, data, _opts(tmp_path / "b", stop_at=2), progress=False)
    assert part.steps_done == 2 and part.interrupted
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2
    rest = train(cfg, data, _opts(tmp_path / "b", resume=True), progress=False)
    assert rest.steps_done == 4 and not rest.interrupted
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["history"][-1]["loss"] == b["history"][-1]["loss"]
    assert a["best_step"] == b["best_step"]
    # a different configuration cannot be resumed
    with pytest.raises(Exception, match="resume"):
        train(cfg, data, _opts(tmp_path / "b", resume=True, lr=5e-4), progress=False)

    # export: safetensors + card with validation accuracy
    w = export_checkpoint(full.best_checkpoint, tmp_path / "w" / "knee")
    model, card = load_model(w)
    assert card["joint"] == "knee" and "val_median_mm" in card["accuracy"]
    assert card["training"]["batch_size"] == 2 and card["training"]["seed"] == 0


def test_validation_metric_uses_real_chain(tmp_path):
    """A model that outputs the true discs must score ~0 mm through extraction + affine + spacing."""
    from cpak_cli.training.training_crops import validation_crop
    from cpak_cli.training.validation import evaluate_samples

    cfg = tiny(128)
    samples = synth_samples(1, 128)

    class Oracle(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.masks = [
                crops.disc_masks(crops.image_to_crop(s.points, validation_crop(s, 128)[1]), 128, 6.0) for s in samples
            ]
            self.i = 0

        def forward(self, x):
            out = torch.from_numpy(np.stack(self.masks[self.i : self.i + len(x)]))
            self.i += len(x)
            return out * 40 - 20

    m = evaluate_samples(Oracle(), samples, cfg, batch_size=8)
    assert m["found_rate"] == 1.0 and m["median_mm"] < 0.05 and m["median_px"] < 0.2


def test_real_selection_sees_the_knees_outside_their_bands():
    from cpak_cli.training.validation import REAL_ERROR_CAP_MM, real_selection_mm

    # 6 of 10 band errors are 0: a median would be 0 whatever the other four are
    inside = [0.0] * 6
    assert real_selection_mm(inside + [2.0, 4.0, 6.0, 8.0]) == pytest.approx(2.0)
    assert real_selection_mm(inside + [2.0, 4.0, 6.0, 100.0]) == pytest.approx((12.0 + REAL_ERROR_CAP_MM) / 10)
    assert real_selection_mm(inside + [float("inf")] * 4) == pytest.approx(4 * REAL_ERROR_CAP_MM / 10)
    assert real_selection_mm([float("nan"), 3.0]) == pytest.approx(3.0) and real_selection_mm([]) == 0.0


def test_best_checkpoint_selection_never_ignores_a_phantom_median_that_is_missed():
    from cpak_cli.training.validation import metric_key, selection_mm

    assert selection_mm(0.4, 2.0) == pytest.approx(2.4)
    assert selection_mm(None, 0.0) is None  # most phantom points missed: not a good model
    assert metric_key({"select_mm": selection_mm(None, 0.0)}) > metric_key({"select_mm": selection_mm(0.4, 2.0)})


# ----------------------------------------------------------------------------- CLI


def _write_dicom(path: Path, img: np.ndarray, spacing: tuple[float, float]) -> None:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientOrientation = ["L", "F"]
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
    ds.PixelData = (img * 4000).astype(np.uint16).tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)


def test_cli_train_on_files(tmp_path):
    import cv2
    from typer.testing import CliRunner

    from cpak_cli.cli import app

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        img, lms, boxes = synth_image(i)
        name = f"case{i}.dcm" if i == 0 else f"case{i}.png"
        if i == 0:
            _write_dicom(data / name, img, (0.2, 0.2))
        else:
            cv2.imwrite(str(data / name), (img * 60000).astype(np.uint16))
        legs = {side: {n: list(p) for n, p in leg.items()} for side, leg in lms.items()}
        (data / f"case{i}.landmarks.json").write_text(
            json.dumps({"image": name, "pixel_spacing_mm": [0.2, 0.2], "legs": legs}))
        (data / f"case{i}.boxes.json").write_text(json.dumps({"image": name, "boxes": boxes}))

    runner = CliRunner()
    args = ["train", "--joint", "knee", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2",
            "--batch-size", "2", "--input-size", "64", "--encoder-depth", "3", "--decoder-channels", "16,8,4",
            "--workers", "1", "--device", "cpu", "--val-fraction", "0.5", "--eval-every", "1", "--no-progress",
            "--export", str(tmp_path / "w" / "knee")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "done: 2/2 steps" in res.output
    for f in ("last.pt", "best.pt", "config.json", "history.jsonl"):
        assert (tmp_path / "run" / f).is_file(), f
    split = json.loads((tmp_path / "run" / "config.json").read_text())["split"]
    assert len(split["train"]) == 1 and len(split["val"]) == 1
    model, card = load_model(tmp_path / "w" / "knee.safetensors")
    assert card["input_size"] == 64 and card["training"]["steps"] == 2

    res = runner.invoke(app, ["train", "--joint", "knee", "--data", str(tmp_path / "missing"), "--out",
                              str(tmp_path / "run2"), "--no-progress"])
    assert res.exit_code == 2 and "data directory not found" in res.output
    res = runner.invoke(app, ["train", "--joint", "elbow", "--phantom", "2", "--out", str(tmp_path / "r3")])
    assert res.exit_code == 2


@pytest.mark.slow
def test_phantom_samples_render_rois_only():
    from cpak_cli.training.sources import phantom_samples

    samples, skipped = phantom_samples((0, 0, {}, "knee", KNEE, 64, 1.5))
    assert len(samples) == 2 and skipped == 0
    assert {s.side for s in samples} == {"right", "left"}
    for s in samples:
        assert s.cache.shape == (96, 96) and s.cache.dtype == np.float16 and float(s.cache.max()) == 1.0


def test_init_weights_and_time_box(tmp_path):
    """--init starts from an exported model; a time box ends training as complete and exports."""
    import torch

    from cpak_cli.networks.model_cards import load_model, save_weights
    from cpak_cli.networks.models import build_model

    cfg = tiny()
    torch.manual_seed(5)
    save_weights(build_model(cfg), cfg, tmp_path / "init", training={"note": "init"})
    init, _ = load_model(tmp_path / "init", fold_batchnorm=False)
    samples = synth_samples(2)
    opts = TrainOptions(out_dir=str(tmp_path / "run"), steps=3, batch_size=2, lr=0.0, val_fraction=0.5,
                        eval_every=100, init_weights=str(tmp_path / "init"), export=str(tmp_path / "out"),
                        max_seconds=0.0)
    res = train(cfg, TrainData(samples=samples), opts, progress=False)
    assert res.steps_done == 0 and not res.interrupted and res.exported is not None
    got, card = load_model(tmp_path / "out", fold_batchnorm=False)
    k = next(n for n in init.state_dict() if n.endswith("weight") and init.state_dict()[n].dim() == 4)
    assert torch.equal(got.state_dict()[k], init.state_dict()[k])
    assert card["training"]["init_weights"]["sha256"] and card["training"]["stopped_by_time_at_step"] == 0


def test_init_weights_of_another_architecture_is_refused(tmp_path):
    from cpak_cli.networks.model_cards import save_weights
    from cpak_cli.networks.models import ModelConfig, build_model

    other = ModelConfig("knee", encoder_depth=3, decoder_channels=(16, 8, 4), input_size=64, input_norm="minmax")
    save_weights(build_model(other), other, tmp_path / "init", training={})
    opts = TrainOptions(out_dir=str(tmp_path / "run"), steps=1, batch_size=2, val_fraction=0.0,
                        init_weights=str(tmp_path / "init"))
    with pytest.raises(CpakInputError, match="architecture differs"):
        train(tiny(), TrainData(samples=synth_samples(1)), opts, progress=False)
