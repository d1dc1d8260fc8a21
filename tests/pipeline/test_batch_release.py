"""A batch releases every film it decoded (a held film leaves its decode worker), after the
film's rows and outputs are written, also when measuring it failed."""

from pathlib import Path

import pytest

from cpak_cli.errors import CpakInputError
from cpak_cli.input.held import HeldFilm
from cpak_cli.options import BatchOptions
from cpak_cli.pipeline.batch import finish_group, run_batch, start_group
from cpak_cli.pipeline.decoding import Decoded, find_inputs
from tests.factories import FakeMeasurer, make_dx, write


class Film:
    """A stand-in decoded image that counts its releases."""

    decodes_on_demand = True

    def __init__(self, path: str) -> None:
        self.path, self.released = path, 0

    def release(self) -> None:
        self.released += 1


class OneAtATime:
    """start() fails, so the group is measured one film at a time: ``bad*`` raises, ``gone*``
    raises the cage's CpakInputError; never releases itself (release=False)."""

    def start(self, images, boxes=None):
        raise RuntimeError("detector exploded")

    def finish(self, started, release=True):
        raise AssertionError("never started")

    def measure_images(self, images, boxes=None, release=True):
        assert release is False
        name = Path(images[0].path).name
        if name.startswith("bad"):
            raise RuntimeError("network exploded")
        if name.startswith("gone"):
            raise CpakInputError(images[0].path, "the decoder crashed on this file")
        return [f"measured {name}"]


@pytest.mark.parametrize("release", [True, False])
def test_the_one_at_a_time_fallback_releases_every_film_whatever_happened(release):
    group = [Decoded(n, "", Film(n), None) for n in ("ok1.dcm", "bad.dcm", "gone.dcm", "ok2.dcm")]
    group.append(Decoded("unreadable.dcm", "", None, "unreadable.dcm: cannot read file"))
    results, errors = finish_group(OneAtATime(), start_group(OneAtATime(), group), release=release)
    assert results == {"ok1.dcm": "measured ok1.dcm", "ok2.dcm": "measured ok2.dcm"}
    assert errors == {"bad.dcm": "bad.dcm: measurement failed (RuntimeError: network exploded)",
                      "gone.dcm": "gone.dcm: the decoder crashed on this file"}
    assert [d.image.released for d in group[:4]] == [int(release)] * 4


def test_a_batch_releases_each_held_film_after_its_outputs(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    for i in range(3):
        write(make_dx(), tmp_path / "in" / f"f{i}.dcm")
    events = []
    release = HeldFilm.release

    def recording(self):
        events.append(("release", Path(self.path).name))
        release(self)

    monkeypatch.setattr(HeldFilm, "release", recording)

    def on_result(d, res):
        assert isinstance(d.image, HeldFilm)  # a film decoded in full stays in its worker
        events.append(("output", Path(d.path).name))

    run_batch(find_inputs(tmp_path / "in"), tmp_path / "out.csv", FakeMeasurer(), BatchOptions(workers=1, chunk=2),
              on_result=on_result)
    for name in ("f0.dcm", "f1.dcm", "f2.dcm"):
        mine = [kind for kind, n in events if n == name]
        assert mine[0] == "output" and "release" in mine[1:]
