"""`cpak batch --report`: one self-contained HTML file built from the CSV rows (resume included),
one grid point per measured leg, a thumbnail per measured film, nothing fetched, names escaped."""

from __future__ import annotations

import base64
import csv
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cpak_cli import api
from cpak_cli.errors import CpakInputError
from cpak_cli.outputs import html_report
from tests.factories import FakeMeasurer, gradient, make_dx, write

HOSTILE = "<script>alert(1)</script>.dcm"  # a folder "<script>alert(1)<" holding "script>.dcm"
HOSTILE_FLAT = "<img src=x onerror=alert(1)>.dcm"


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in a.get("class", "").split())]


def _legs(path: str) -> dict[str, tuple[float, float, float]]:
    """Per film the legs the fake measurer finds: "flagged" films get a borderline right leg
    (aHKA -1.8: informational) and a left leg out of range (LDFA 106: no CPAK type)."""
    if "flagged" in Path(path).name:
        return {"right": (88.0, 86.2, -1.0), "left": (106.0, 91.0, 2.0)}
    return dict(FakeMeasurer.LEGS)


def _films(folder: Path, names: list[str]) -> None:
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        write(make_dx(pixels=gradient(120, 60, scale=10), pixel_spacing=(8.0, 8.0)), p)


def _batch(monkeypatch, folder: Path, csv_path: Path, **kw) -> FakeMeasurer:
    fake = FakeMeasurer(legs=_legs)
    monkeypatch.setattr(api, "measurer_for", lambda options, need_detector=True: fake)
    api.run_batch(folder, csv_path, batch=api.BatchOptions(workers=1, recursive=True, **kw))
    return fake


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "films"
    _films(d, ["a_ok.dcm", "b_flagged.dcm", HOSTILE, HOSTILE_FLAT])
    data = (d / "a_ok.dcm").read_bytes()
    (d / "c_truncated.dcm").write_bytes(data[: len(data) // 3])
    return d


def test_report_points_thumbnails_order_no_fetch_and_escaping(monkeypatch, folder, tmp_path):
    out, report = tmp_path / "out.csv", tmp_path / "report.html"
    _batch(monkeypatch, folder, out, report=report)
    rows = _rows(out)
    text = report.read_text(encoding="utf-8")
    page = Page(text)

    measured = [r for r in rows if r["side"] and r["ahka"] and not r["error"]]
    assert len(measured) == 8  # four films measured, two legs each; the truncated one is an error row
    assert len(page.find("circle", "leg")) == len(measured)
    kinds = sorted(a["data-kind"] for a in page.find("circle", "leg"))
    assert kinds == ["info", "none", "none", "none", "none", "none", "none", "untyped"]

    thumbs = page.find("img", "thumb")
    assert len(thumbs) == len({r["input"] for r in rows if r["side"]}) == 4
    for a in thumbs:
        assert a["src"].startswith("data:image/jpeg;base64,")
        assert base64.b64decode(a["src"].split(",", 1)[1])[:2] == b"\xff\xd8"

    # nothing is fetched: no URL in any src/href, no @import, no script, a CSP that forbids it
    for _, attrs in page.tags:
        for k in ("src", "href", "xlink:href", "action"):
            assert not attrs.get(k, "").lower().startswith(("http:", "https:", "//")), attrs
    assert "http://" not in text and "https://" not in text and "@import" not in text and "url(" not in text
    assert not page.find("script") and not page.find("link") and not page.find("iframe")
    assert any("default-src 'none'" in a.get("content", "") for a in page.find("meta"))

    # hostile names are text, never markup
    assert "<script>alert" not in text and "<img src=x" not in text
    shown = "".join(page.text)
    assert HOSTILE in shown and HOSTILE_FLAT in shown

    # failed films first, then flagged, then the rest
    statuses = [a["class"].split()[1] for a in page.find("section", "film")]
    assert statuses == ["failed", "flagged", "ok", "ok", "ok"]


def test_report_covers_every_row_after_resume_and_says_when_a_thumbnail_is_missing(monkeypatch, tmp_path):
    folder, out, report = tmp_path / "films", tmp_path / "out.csv", tmp_path / "r.html"
    _films(folder, ["a_ok.dcm", "b_flagged.dcm"])
    _batch(monkeypatch, folder, out)  # the first run keeps no thumbnails
    _films(folder, ["c_ok.dcm"])
    _batch(monkeypatch, folder, out, resume=True, report=report)
    page = Page(report.read_text(encoding="utf-8"))
    assert len(page.find("section", "film")) == 3 and len(page.find("circle", "leg")) == 6
    # resume measures the CSV's last film again (its rows may be torn): b and c have thumbnails, a not
    assert sorted(Path(a["alt"]).name for a in page.find("img", "thumb")) == ["b_flagged.dcm", "c_ok.dcm"]
    assert "".join(page.text).count("thumbnail missing") == 1

    _films(folder, ["d_ok.dcm"])
    _batch(monkeypatch, folder, out, resume=True, report=report)
    page = Page(report.read_text(encoding="utf-8"))
    assert len(page.find("section", "film")) == 4 and len(page.find("img", "thumb")) == 3  # b's kept from before


def test_a_fresh_batch_drops_old_thumbnails(monkeypatch, folder, tmp_path):
    out, report = tmp_path / "out.csv", tmp_path / "r.html"
    _batch(monkeypatch, folder, out, report=report)
    thumbs = html_report.thumbnail_dir(out)
    assert len(list(thumbs.glob("*.jpg"))) == 4
    (folder / "a_ok.dcm").write_bytes(b"not a film any more")
    _batch(monkeypatch, folder, out, report=report, overwrite=True)
    assert len(list(thumbs.glob("*.jpg"))) == 3
    assert len(Page(report.read_text(encoding="utf-8")).find("img", "thumb")) == 3


def test_anonymized_report_has_redacted_thumbnails_and_no_names(monkeypatch, folder, tmp_path):
    """Under --anonymize every thumbnail is drawn on the redacted film (burned-in text blanked by
    cpak_cli.outputs.redact, as the overlay PNGs), and no file name reaches the page."""
    from cpak_cli.outputs import redact

    redacted = []
    real = redact.redact_result

    def spy(result):
        redacted.append(result.path)
        return real(result)

    monkeypatch.setattr(redact, "redact_result", spy)
    out, report = tmp_path / "anon.csv", tmp_path / "r.html"
    _batch(monkeypatch, folder, out, report=report, anonymize_salt="s3cret")
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    thumbs = page.find("img", "thumb")
    assert len(thumbs) == len(redacted) == 4  # one redaction per measured film, one thumbnail each
    assert "text burned into the films outside the legs is blanked" in "".join(page.text)
    assert len(page.find("circle", "leg")) == 8
    for name in ("a_ok", "b_flagged", "alert(1)", str(folder)):
        assert name not in text


def test_a_thumbnail_that_cannot_be_drawn_costs_nothing_else(monkeypatch, folder, tmp_path):
    def broken(result, anonymized):
        raise RuntimeError("no drawing today")

    monkeypatch.setattr(html_report, "thumbnail_pixels", broken)
    out, report = tmp_path / "out.csv", tmp_path / "r.html"
    _batch(monkeypatch, folder, out, report=report)
    assert len([r for r in _rows(out) if r["side"]]) == 8
    page = Page(report.read_text(encoding="utf-8"))
    assert not page.find("img") and "".join(page.text).count("thumbnail missing") == 4


def test_report_path_checked_before_measuring(monkeypatch, folder, tmp_path):
    with pytest.raises(CpakInputError, match="is a directory"):
        _batch(monkeypatch, folder, tmp_path / "out.csv", report=tmp_path)
    with pytest.raises(CpakInputError, match="must not be the CSV"):
        _batch(monkeypatch, folder, tmp_path / "out.csv", report=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_shown_cells_add_up_like_the_tables():
    row = {"ldfa": "87.4479", "mpta": "86.7505", "ahka": "-0.6974", "jlo": "174.1984", "mhka": ""}
    assert html_report.shown_cells(row) == {"ldfa": "87.4", "mpta": "86.8", "ahka": "-0.6", "jlo": "174.2",
                                           "mhka": "-"}
    partial = {"ldfa": "87.4479", "mpta": "86.7505", "ahka": "", "jlo": "", "mhka": "1.0"}
    assert html_report.shown_cells(partial)["ahka"] == "-"


def test_histogram_of_absurd_values_is_drawn_in_the_edge_bins():
    """A hand-edited CSV with an absurd angle must not crash or blow up the page: values outside
    0-180 degrees land in the edge bins."""
    from cpak_cli.outputs.charts import histogram_svg

    svg = histogram_svg([87.0, 1e308, -5e9, float("nan")], "LDFA")
    assert svg.startswith("<svg") and len(svg) < 20_000
    assert "(n=4)" in svg
