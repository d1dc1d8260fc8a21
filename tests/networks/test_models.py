"""Model construction, weights files (safetensors fp16 + model card) and `cpak models`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.factories import tiny_model

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from cpak_cli.core.landmarks import JOINTS  # noqa: E402
from cpak_cli.errors import CpakModelError  # noqa: E402
from cpak_cli.networks.model_cards import (  # noqa: E402
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    load_model,
    model_size_fp16,
    save_weights,
    state_dict_fp16,
    weights_dir,
)
from cpak_cli.networks.model_list import list_models  # noqa: E402
from cpak_cli.networks.models import ModelConfig, build_model, predict  # noqa: E402

tiny = tiny_model


@pytest.fixture(autouse=True)
def _threads(one_torch_thread):
    yield


def test_config_defaults():
    cfg = ModelConfig("knee")
    assert cfg.landmarks == JOINTS["knee"]
    assert cfg.encoder == "tu-resnet10t" and cfg.encoder_depth == 4
    assert cfg.decoder_channels == (128, 64, 32, 16)
    assert cfg.input_size == 256 and cfg.in_channels == 3
    assert cfg.mask_radius == pytest.approx(7.5)  # 15 px at 512, scaled
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_config_rejects_bad_values():
    with pytest.raises(CpakModelError):
        ModelConfig("elbow")
    with pytest.raises(CpakModelError):
        ModelConfig("knee", encoder_depth=3)  # 4 decoder channels
    with pytest.raises(CpakModelError):
        ModelConfig("knee", input_size=100)  # not a multiple of 16


@pytest.mark.parametrize("joint", list(JOINTS))
def test_build_model_output_shape(joint):
    cfg = tiny(joint)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, len(JOINTS[joint]), 64, 64)


def test_default_size_budget():
    sizes = {j: model_size_fp16(ModelConfig(j)) for j in JOINTS}
    assert all(s <= MAX_FILE_BYTES for s in sizes.values())
    # three landmark models + a detector of the same size stay within the total budget
    assert sum(sizes.values()) + max(sizes.values()) <= MAX_TOTAL_BYTES
    assert max(sizes.values()) < 5 * 2**20  # tu-resnet10t depth 4: a few MB


def test_save_load_round_trip(tmp_path):
    cfg = tiny()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = save_weights(model, cfg, tmp_path / "knee", training={"seed": 1}, accuracy={"median_mm": 1.5})
    assert path == tmp_path / "knee.safetensors"
    card = json.loads((tmp_path / "knee.json").read_text())
    for key in ("name", "joint", "landmarks", "architecture", "input_size", "mask_radius_px", "sha256",
                "num_tensors", "num_parameters", "dtype", "training", "tool_version", "created", "accuracy"):
        assert key in card, key
    assert card["name"] == "knee" and card["dtype"] == "float16"
    assert card["architecture"] == cfg.to_dict()

    loaded, card2 = load_model(tmp_path / "knee")
    assert card2["config"] == cfg and not loaded.training
    # reference: the original model with its weights rounded to float16
    ref = build_model(cfg).eval()
    ref.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state_dict_fp16(model).items()})
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        # the loaded model runs channels-last (NHWC): same network, float sums in another order
        assert torch.allclose(loaded(x), ref(x), rtol=0, atol=1e-5)
        assert torch.allclose(loaded(x), model(x), atol=5e-2)
    for v in loaded.state_dict().values():
        assert v.dtype in (torch.float32, torch.int64)

    # by name through the weights directory (explicit > env)
    loaded2, _ = load_model("knee", weights_dir=tmp_path)
    probs = predict(loaded2, np.random.default_rng(0).random((3, 64, 64), dtype=np.float32))
    assert probs.shape == (3, 5, 64, 64) and probs.min() >= 0 and probs.max() <= 1


def test_tampered_file_and_wrong_shapes(tmp_path):
    cfg = tiny()
    save_weights(build_model(cfg), cfg, tmp_path / "knee", training={})
    w, c = tmp_path / "knee.safetensors", tmp_path / "knee.json"
    good_bytes, good_card = w.read_bytes(), c.read_text()

    data = bytearray(good_bytes)
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CpakModelError, match="sha256"):
        load_model(w)
    w.write_bytes(good_bytes)

    card = json.loads(good_card)
    card["architecture"]["decoder_channels"] = [32, 16, 8]
    c.write_text(json.dumps(card))
    with pytest.raises(CpakModelError, match="shape") as err:
        load_model(w)
    assert "\n" not in str(err.value)

    card = json.loads(good_card)
    card["architecture"]["encoder_depth"] = 4
    card["architecture"]["decoder_channels"] = [16, 8, 4, 4]
    c.write_text(json.dumps(card))
    with pytest.raises(CpakModelError):
        load_model(w)

    c.write_text("{not json")
    with pytest.raises(CpakModelError, match="JSON"):
        load_model(w)
    c.unlink()
    with pytest.raises(CpakModelError, match="card"):
        load_model(w)
    with pytest.raises(CpakModelError, match="not found"):
        load_model("nope", weights_dir=tmp_path)


def test_weights_dir_resolution(tmp_path, monkeypatch):
    import cpak_cli

    monkeypatch.delenv("CPAK_WEIGHTS_DIR", raising=False)
    assert weights_dir() == Path(cpak_cli.__file__).resolve().parent / "weights"
    monkeypatch.setenv("CPAK_WEIGHTS_DIR", str(tmp_path / "env"))
    assert weights_dir() == tmp_path / "env"
    assert weights_dir(tmp_path / "x") == tmp_path / "x"


def test_list_models_and_cli(tmp_path):
    from typer.testing import CliRunner

    from cpak_cli.cli import app

    for joint in ("knee", "ankle"):
        cfg = tiny(joint)
        save_weights(build_model(cfg), cfg, tmp_path / joint, training={}, accuracy={"median_mm": 2.0})
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    entries = list_models(tmp_path, check_shapes=True)
    assert [e["name"] for e in entries] == ["ankle", "knee"]
    assert all(e["valid"] and e["sha_ok"] for e in entries)
    assert entries[1]["joint"] == "knee" and entries[1]["encoder"] == "tu-resnet10t" and entries[1]["size_mb"] > 0

    runner = CliRunner()
    res = runner.invoke(app, ["models", "--weights-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "knee" in res.output and "ankle" in res.output

    w = tmp_path / "knee.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b"\x00")
    entries = {e["name"]: e for e in list_models(tmp_path)}
    assert entries["knee"]["sha_ok"] is False and not entries["knee"]["valid"]
    res = runner.invoke(app, ["models", "--weights-dir", str(tmp_path), "--json"])
    assert res.exit_code == 2
    assert json.loads(res.stdout)["models"][1]["sha_ok"] is False


def test_vgg16_builds_and_runs():
    cfg = tiny(encoder="vgg16")
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 5, 64, 64)


def test_record_accuracy_keeps_weights_valid(tmp_path):
    from cpak_cli.networks.model_cards import record_accuracy

    cfg = tiny("hip")
    save_weights(build_model(cfg), cfg, tmp_path / "hip")
    record_accuracy("hip", {"median_mm": 0.8, "held_out": "phantom seed 999"}, tmp_path)
    model, card = load_model("hip", tmp_path)
    assert card["accuracy"]["median_mm"] == 0.8
    (tmp_path / "hip.safetensors").write_bytes(b"x" + (tmp_path / "hip.safetensors").read_bytes()[1:])
    with pytest.raises(CpakModelError):
        record_accuracy("hip", {}, tmp_path)


def test_accuracy_summary_names_the_data_of_each_figure():
    from cpak_cli.networks.model_list import accuracy_summary

    acc = {
        "phantom_heldout_true_boxes": {"joint:knee": {"median": 0.16}},
        "real_heldout": {
            "knee_joint_line_height_vs_label": {"median_found": 1.2, "found_pct": 91.9},
            "knee_centre_vs_label": {"median_found": 18.9, "found_pct": 96.8},  # a biased label: not shown
            "legs_with_all_angles_pct": 89.5, "legs_typed_pct": 83.9,
        },
    }
    text = accuracy_summary(acc)
    assert text == ("phantom 0.16 mm, real knee joint line height 1.2 mm, found 92%, real legs with all angles 90%, "
                    "with a CPAK type 84%")
    assert accuracy_summary({}) == "-"
