"""Listing a weights folder: one summary per model (card, size, sha256 and architecture checks, accuracy).

What ``cpak models`` prints. Sizes in bytes (``size_mb`` in MiB); accuracies in mm as the cards
record them (:func:`accuracy_summary`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from cpak_cli.errors import CpakModelError
from cpak_cli.networks.model_cards import CARD_SUFFIX, MAX_FILE_BYTES, WEIGHTS_SUFFIX, _sha256, card_config, load_model, read_card
from cpak_cli.networks.model_cards import weights_dir as _weights_dir


def accuracy_summary(acc: dict[str, Any] | None) -> str:
    """A short text for an accuracy dict (median error in mm if present)."""
    if not acc:
        return "-"
    parts = []
    for key, fmt in (("median_mm", "median {:.2f} mm"), ("val_median_mm", "val median {:.2f} mm"), ("p95_mm", "p95 {:.2f} mm")):
        v = acc.get(key)
        if isinstance(v, (int, float)):
            parts.append(fmt.format(v))
    if isinstance(acc.get("found_rate"), (int, float)):
        parts.append(f"found {100 * acc['found_rate']:.0f}%")
    ph = acc.get("phantom_heldout_true_boxes") or {}
    joint = next((v for k, v in ph.items() if k.startswith("joint:") and isinstance(v, dict)), None)
    if joint and isinstance(joint.get("median"), (int, float)):
        parts.append(f"phantom {joint['median']:.2f} mm")
    real = acc.get("real_heldout") or {}
    for key, label in (("head_dx_vs_top_label", "real head x"), ("ankle_centre_vs_label", "real ankle"),
                       ("knee_joint_line_height_vs_label", "real knee joint line height")):
        r = real.get(key)
        if isinstance(r, dict) and isinstance(r.get("median_found"), (int, float)):
            parts.append(f"{label} {r['median_found']:.1f} mm, found {r.get('found_pct', 0):.0f}%")
    det = real.get("detector")
    if isinstance(det, dict) and det:
        pcts = [v.get("found_pct") for v in det.values() if isinstance(v, dict)]
        found = [float(f) for f in pcts if isinstance(f, (int, float))]
        if found and len(found) == len(pcts):
            parts.append(f"real joints found {min(found):.0f}-{max(found):.0f}%")
    if isinstance(real.get("legs_with_all_angles_pct"), (int, float)):
        parts.append(f"real legs with all angles {real['legs_with_all_angles_pct']:.0f}%")
    if isinstance(real.get("legs_typed_pct"), (int, float)):
        parts.append(f"with a CPAK type {real['legs_typed_pct']:.0f}%")
    if not parts:
        parts = [f"{k}={v}" for k, v in list(acc.items())[:2] if isinstance(v, (int, float, str))]
    return ", ".join(parts) or "-"


def list_models(weights_dir: str | Path | None = None, *, check_shapes: bool = False) -> list[dict[str, Any]]:
    """Summaries of the models in a weights directory (cards and weights files), sorted by name.

    Each entry: name, joint, encoder, input_size, size_bytes, size_mb, sha_ok (bool | None),
    valid (bool), error (one line or None), accuracy (dict), accuracy_summary (str), created,
    card (path), weights (path). ``check_shapes=True`` also builds the model and loads it strictly.
    """
    d = _weights_dir(weights_dir)
    if not d.is_dir():
        return []
    stems = sorted(
        {p.name[: -len(WEIGHTS_SUFFIX)] for p in d.glob("*" + WEIGHTS_SUFFIX)}
        | {p.name[: -len(CARD_SUFFIX)] for p in d.glob("*" + CARD_SUFFIX)}
    )
    out: list[dict[str, Any]] = []
    for stem in stems:
        wpath, cpath = d / (stem + WEIGHTS_SUFFIX), d / (stem + CARD_SUFFIX)
        entry: dict[str, Any] = {
            "name": stem, "joint": None, "encoder": None, "input_size": None, "size_bytes": None, "size_mb": None,
            "sha_ok": None, "valid": False, "error": None, "accuracy": {}, "accuracy_summary": "-",
            "created": None, "card": str(cpath), "weights": str(wpath),
        }
        if cpath.is_file():
            try:
                raw = json.loads(cpath.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raw = None
            if isinstance(raw, dict) and "architecture" not in raw and "sha256" not in raw:
                continue  # some other JSON file, not a model card
        try:
            if not wpath.is_file():
                raise CpakModelError(f"{wpath.name}: weights file missing")
            entry["size_bytes"] = wpath.stat().st_size
            entry["size_mb"] = round(entry["size_bytes"] / 2**20, 2)
            card = read_card(cpath)
            arch = card.get("architecture", {})
            entry.update(
                name=card.get("name", stem), joint=card.get("joint", arch.get("joint")), encoder=arch.get("encoder"),
                input_size=card.get("input_size", arch.get("input_size")), created=card.get("created"),
            )
            acc = card.get("accuracy") or {}
            entry["accuracy"] = acc if isinstance(acc, dict) else {}
            entry["accuracy_summary"] = accuracy_summary(entry["accuracy"])
            entry["sha_ok"] = _sha256(wpath.read_bytes()) == card["sha256"]
            if not entry["sha_ok"]:
                raise CpakModelError(f"{wpath.name}: sha256 does not match the model card")
            card_config(card, cpath)
            if entry["size_bytes"] > MAX_FILE_BYTES:
                raise CpakModelError(f"{wpath.name}: {entry['size_mb']} MiB is over the 16 MiB budget")
            if check_shapes:
                load_model(wpath, device="cpu", fold_batchnorm=False)
            entry["valid"] = True
        except CpakModelError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out

__all__: Sequence[str] = ("list_models", "accuracy_summary")
