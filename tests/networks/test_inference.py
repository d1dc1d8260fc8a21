"""The coordinate chain image -> crop -> probability map -> image, without a trained network."""

import numpy as np
import pytest

from cpak_cli.networks.crops import image_to_crop
from cpak_cli.networks.inference import JointModel, detect_landmarks, make_crop, make_job, points_from_probs


def _disc_image(shape, centres, radius):
    """Smooth bright discs at sub-pixel image points (x, y)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape, np.float32)
    for cx, cy in centres:
        r = np.hypot(xx - cx, yy - cy)
        img = np.maximum(img, (1.0 / (1.0 + np.exp(np.minimum((r - radius) / 0.7, 50.0)))).astype(np.float32))
    return img


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("box", [(300.0, 200.0, 700.0, 600.0), (312.3, 187.9, 652.3, 648.1)])
def test_round_trip_through_crop_and_probs(side, box):
    true = (471.3, 402.7)
    img = _disc_image((900, 1000), [true], radius=30.0)
    job = make_job(0, side, "hip", box, 128, patient_right_on_image_left=True)
    crop = make_crop(img, job, 128)
    # the crop itself serves as the probability map: no network, exact geometry only
    preds = points_from_probs(crop[None], job.matrix, ("femoral_head",), (0.2, 0.1), method=3)
    p = preds[0]
    assert p.found
    assert p.x == pytest.approx(true[0], abs=0.15) and p.y == pytest.approx(true[1], abs=0.15)
    assert p.x_mm == pytest.approx(p.x * 0.1) and p.y_mm == pytest.approx(p.y * 0.2)
    # the mirrored crop really is mirrored
    u = image_to_crop(np.array([true]), job.matrix)[0, 0]
    assert (u > 64) == (side == "left")


def test_empty_probability_map_is_not_found():
    job = make_job(0, "right", "hip", (0, 0, 100, 100), 32)
    p = points_from_probs(np.zeros((1, 32, 32), np.float32), job.matrix, ("femoral_head",), (0.1, 0.1))[0]
    assert not p.found and p.xy is None and p.to_json()["x"] is None


def test_detect_landmarks_batches_images_with_identity_network():
    torch = pytest.importorskip("torch")

    class Identity(torch.nn.Module):
        """Logits whose sigmoid is the input crop: the 'prediction' is the image itself."""

        def forward(self, x):
            p = x[:, :1].clamp(1e-4, 1 - 1e-4)
            return torch.log(p / (1 - p))

    truths = [[(210.4, 180.2), (640.7, 190.9)], [(250.0, 300.5), (700.2, 310.0)]]
    images = [_disc_image((600, 900), t, 25.0) for t in truths]
    boxes = [
        {"right": {"hip": (t[0][0] - 90, t[0][1] - 70, t[0][0] + 70, t[0][1] + 90)},
         "left": {"hip": (t[1][0] - 60, t[1][1] - 80, t[1][0] + 100, t[1][1] + 80)}}
        for t in truths
    ]
    model = JointModel(Identity(), "hip", ("femoral_head",), 96, "identity")
    res = detect_landmarks(images, boxes, [(0.15, 0.15)] * 2, {"hip": model}, batch_size=3)
    for r, t in zip(res, truths):
        assert r["right"]["femoral_head"].x == pytest.approx(t[0][0], abs=0.2)
        assert r["right"]["femoral_head"].y == pytest.approx(t[0][1], abs=0.2)
        assert r["left"]["femoral_head"].x == pytest.approx(t[1][0], abs=0.2)
        assert r["left"]["femoral_head"].y == pytest.approx(t[1][1], abs=0.2)
