"""The drift report renders any monitoring result, hostile names included, as one self-contained page and a PNG."""

from __future__ import annotations

import copy
import html
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mlops_module.monitoring.report import HTML_NAME, PNG_NAME, render_html, render_png, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
QUOTES = '"quotes" & ampersands <b>'
DECILES = ["(-inf, 3.2)", "[3.2, 7.9)", "[7.9, 12)", "[12, 18.5)", "[18.5, 24)",
           "[24, 31.7)", "[31.7, 39)", "[39, 47.2)", "[47.2, 55.1)", "[55.1, inf)"]


def _numeric(name: str, score: float, ks: float, current: list[float], drifted: bool,
             current_missing: float = 0.0) -> dict[str, Any]:
    return {"name": name, "kind": "numeric", "score": score, "psi": score, "ks": ks, "js": round(score * 0.6, 6),
            "drifted": drifted, "reference_rows": 45000, "current_rows": 3500, "labels": list(DECILES),
            "reference_shares": [0.1] * 10, "current_shares": current,
            "reference_missing": 0.0, "current_missing": current_missing}


def make_result(performance: dict[str, Any] | None = None) -> dict[str, Any]:
    """A monitoring result as the job writes it: 3 numeric features (two with hostile names), 1 categorical."""
    features = [
        _numeric("monthly_charges", 0.0412345678, 0.05, [0.09, 0.11, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], False),
        _numeric("tenure", 0.31, 0.22, [0.02, 0.05, 0.08, 0.1, 0.1, 0.1, 0.1, 0.15, 0.15, 0.15], True),
        _numeric(SCRIPT, 0.2503, 0.18, [0.2, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05], True, 0.0123),
        {"name": QUOTES, "kind": "categorical", "score": 0.12, "psi": 0.12, "ks": None, "js": 0.09,
         "drifted": False, "reference_rows": 45000, "current_rows": 3500,
         "labels": ["basic", "premium", "<i>family</i>", "__other__"],
         "reference_shares": [0.5, 0.3, 0.15, 0.05], "current_shares": [0.4, 0.35, 0.2, 0.05],
         "reference_missing": 0.001, "current_missing": 0.0},
    ]
    return {
        "model": "churn-classifier", "stand": "prom", "version": "3",
        "airflow_run_id": "scheduled__2025-05-15T00:00:00+00:00",
        "window": {"start": "2025-05-08T00:00:00+00:00", "end": "2025-05-15T00:00:00+00:00"},
        "method": "psi", "threshold": 0.2, "share_threshold": 0.3, "min_rows": 1000,
        "reference_rows": 45000, "current_rows": 3500,
        "features": features,
        "drifted_share": 0.5, "dataset_drift": True,
        "performance": performance,
        "decision": {"action": "retrain",
                     "reasons": ["dataset drift: 50% of features drifted (threshold 30%)", "tenure & <plan> moved"],
                     "window": {"start": "2025-04-15T00:00:00+00:00", "end": "2025-05-15T00:00:00+00:00"}},
    }


PERFORMANCE = {"metric": "roc_auc", "value": 0.68, "min": 0.7, "max": None, "rows": 3400, "decayed": True}


class Page(HTMLParser):
    """What a browser would see: start tags, the features table's rows (class, cell texts), the summary."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.html_tags: list[str] = []  # outside SVG (whose <title> is a tooltip, not the page's)
        self.rows: list[tuple[str, list[str]]] = []
        self.summary: dict[str, str] = {}
        self.svg_texts: list[list[str]] = []
        self.title = ""
        self._cell: list[str] | None = None
        self._term: list[str] | None = None
        self._definition: list[str] | None = None
        self._in_svg = self._in_title = False
        self._in_table = False
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if not self._in_svg and tag != "svg":
            self.html_tags.append(tag)
        if tag == "table" and attributes.get("class") == "features":
            self._in_table = True
        elif tag == "tr" and self._in_table:
            self.rows.append((attributes.get("class") or "", []))
        elif tag in ("td", "th") and self._in_table:
            self._cell = []
        elif tag == "dt":
            self._term = []
        elif tag == "dd":
            self._definition = []
        elif tag == "svg":
            self._in_svg = True
            self.svg_texts.append([])
        elif tag == "title" and not self._in_svg:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None
        elif tag == "dd" and self._term is not None and self._definition is not None:
            self.summary["".join(self._term)] = "".join(self._definition)
            self._term = self._definition = None
        elif tag == "svg":
            self._in_svg = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        for sink in (self._cell, self._definition if self._definition is not None else self._term):
            if sink is not None:
                sink.append(data)
        if self._in_svg:
            self.svg_texts[-1].append(data)
        if self._in_title:
            self.title += data

    def count(self, tag: str) -> int:
        return self.html_tags.count(tag)

    def feature_rows(self) -> list[tuple[str, list[str]]]:
        return self.rows[1:]  # the first is the header


def test_one_self_contained_document() -> None:
    document = render_html(make_result(PERFORMANCE))
    page = Page(document)
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert [page.count(t) for t in ("html", "head", "body", "title", "style")] == [1, 1, 1, 1, 1]
    assert not {t for t, _ in page.tags} & {"script", "link", "img", "iframe", "object", "embed", "b", "i"}
    lowered = document.lower()
    for external in ("http:", "https:", "//", "url(", "@import", "src="):
        assert external not in lowered, external
    assert page.title == "Drift report: churn-classifier on prom"


def test_every_value_is_escaped_exactly_once() -> None:
    document = render_html(make_result(PERFORMANCE))
    assert "<script" not in document.lower() and "<b>" not in document and "<i>" not in document
    for name in (SCRIPT, QUOTES, "monthly_charges", "tenure"):
        assert html.escape(name) in document
    page = Page(document)
    # Parsed back, the names are the raw strings: escaped once, not twice.
    assert {cells[0] for _, cells in page.feature_rows()} == {"monthly_charges", "tenure", SCRIPT, QUOTES}
    assert "&amp;amp;" not in document
    assert any("<i>family</i>" in "".join(texts) for texts in page.svg_texts)


def test_hostile_header_values_are_escaped() -> None:
    result = make_result()
    result["model"] = '</title><script>x()</script>'
    result["stand"] = '" onload="x()'
    result["decision"]["action"] = "<img src=x onerror=alert(1)>"
    document = render_html(result)
    page = Page(document)
    assert not {t for t, _ in page.tags} & {"script", "img"}
    assert all("onload" not in attrs and "onerror" not in attrs for _, attrs in page.tags)
    assert page.title == 'Drift report: </title><script>x()</script> on " onload="x()'


def test_features_ordered_by_score_with_drifted_marked() -> None:
    page = Page(render_html(make_result()))
    header, *rows = page.rows
    assert header[1][:4] == ["feature", "kind", "score (psi)", "PSI"]
    assert [cells[0] for _, cells in rows] == ["tenure", SCRIPT, QUOTES, "monthly_charges"]
    assert [(cls, cells[-1]) for cls, cells in rows] == [
        ("drifted", "drifted"), ("drifted", "drifted"), ("stable", "stable"), ("stable", "stable")]
    figures = [a.get("class") for t, a in page.tags if t == "figure"]
    assert figures == ["feature drifted", "feature drifted", "feature stable", "feature stable"]


def test_numbers_and_nulls_formatted() -> None:
    page = Page(render_html(make_result()))
    rows = {cells[0]: cells for _, cells in page.feature_rows()}
    assert rows["monthly_charges"][2] == "0.04123"  # 4 significant digits
    assert rows[QUOTES][4] == "–"  # a categorical has no KS
    assert rows[QUOTES][5] == "0.09"
    assert rows[SCRIPT][7] == "1.23%"  # missing share of the current window
    assert page.summary["reference rows"] == "45,000"
    assert page.summary["current rows"] == "3,500 (at least 1,000 needed)"
    assert page.summary["dataset drift"] == "yes"
    assert page.summary["drifted features"] == "2 of 4: share 50% (dataset drift at ≥ 30%)"


def test_one_histogram_per_feature_with_bins_score_and_verdict() -> None:
    document = render_html(make_result())
    assert document.count("<svg") == 4
    page = Page(document)
    tenure = "".join(page.svg_texts[0])
    assert "tenure · psi 0.31 · drifted" in tenure
    for label in DECILES:
        assert label in tenure
    categorical = "".join(page.svg_texts[2])
    assert "stable" in categorical and "premium" in categorical and "__other__" in categorical
    # side by side: a reference and a current bar per bin, plus the two legend swatches
    svgs = ["<svg" + svg.split("</svg>")[0] + "</svg>" for svg in document.split("<svg")[1:]]
    assert [svg.count("<rect") for svg in svgs] == [2 + 2 * 10, 2 + 2 * 10, 2 + 2 * 4, 2 + 2 * 10]
    for svg in svgs:  # well-formed XML too, hostile labels and all: it is pasted as is into SVG tools
        root = ET.fromstring(svg)
        assert root.tag == "svg" and float(root.attrib["width"]) > 300


def test_decision_and_reasons_in_the_header() -> None:
    document = render_html(make_result())
    assert '<div class="action retrain">retrain</div>' in document
    assert "<li>dataset drift: 50% of features drifted (threshold 30%)</li>" in document
    assert "<li>tenure &amp; &lt;plan&gt; moved</li>" in document
    assert "2025-05-08T00:00:00+00:00 → 2025-05-15T00:00:00+00:00" in document
    assert "decision window 2025-04-15T00:00:00+00:00 → 2025-05-15T00:00:00+00:00" in document
    assert "champion version <strong>3</strong>" in document


@pytest.mark.parametrize("performance", [None, PERFORMANCE], ids=["no-performance", "performance"])
def test_performance_absent_or_present(performance: dict[str, Any] | None, tmp_path: Path) -> None:
    page = Page(render_html(make_result(performance)))
    if performance is None:
        assert page.summary["performance"] == "not measured"
        assert "performance decayed" not in page.summary
    else:
        assert page.summary["performance"] == "roc_auc = 0.68 (min 0.7, max –) on 3,400 labelled rows"
        assert page.summary["performance decayed"] == "yes"
    assert render_png(make_result(performance), tmp_path / "s.png").read_bytes().startswith(PNG_SIGNATURE)


def test_png_summary(tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = render_png(make_result(PERFORMANCE), tmp_path / "nested" / "summary.png")
    assert path == tmp_path / "nested" / "summary.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert 10_000 < len(data) < 2_000_000
    height, width = imread(path).shape[:2]
    assert width > height > 100


def test_png_text_is_not_parsed_as_math(tmp_path: Path) -> None:
    """Unbalanced or invalid mathtext in a name would make matplotlib raise while saving."""
    result = make_result()
    result["features"][0]["name"] = r"cost $\frac{ in $"
    result["model"] = "a_$b^$"
    assert render_png(result, tmp_path / "math.png").read_bytes().startswith(PNG_SIGNATURE)


def test_no_features_insufficient_data(tmp_path: Path) -> None:
    result = make_result()
    result.update(features=[], drifted_share=0.0, dataset_drift=False, current_rows=12)
    result["decision"] = {"action": "insufficient_data", "reasons": ["12 rows in the window, 1000 needed"],
                          "window": None}
    document = render_html(result)
    assert "<svg" not in document
    assert '<div class="action insufficient">insufficient_data</div>' in document
    assert "no features were scored" in document and "decision window" not in document
    assert Page(document).summary["drifted features"] == "0 of 0: share 0% (dataset drift at ≥ 30%)"
    html_path, png_path = write_report(result, tmp_path / "empty")
    assert html_path.read_text(encoding="utf-8") == document
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)


def test_partial_and_odd_values_still_render() -> None:
    """A result with keys missing, NaN scores or labels and shares of different lengths renders, never raises."""
    result = copy.deepcopy(make_result())
    result["features"][0].update(score=float("nan"), labels=["a"], current_shares=None)
    del result["decision"]["reasons"]
    del result["threshold"]
    page = Page(render_html(result))
    assert page.feature_rows()[-1][1][0] == "monthly_charges"  # NaN sorts last
    assert page.feature_rows()[-1][1][2] == "nan"
    assert "no reasons given" in render_html(result)


def test_write_report(tmp_path: Path) -> None:
    html_path, png_path = write_report(make_result(PERFORMANCE), tmp_path / "out")
    assert (html_path.name, png_path.name) == (HTML_NAME, PNG_NAME) == ("drift_report.html", "drift_summary.png")
    assert html_path.parent == png_path.parent == tmp_path / "out"
    assert html_path.read_text(encoding="utf-8") == render_html(make_result(PERFORMANCE))
    assert png_path.read_bytes().startswith(PNG_SIGNATURE)


def test_cheap_import_and_no_pyplot(tmp_path: Path) -> None:
    """Airflow tasks import the module: no matplotlib until a PNG is drawn, and drawing never loads pyplot."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import mlops_module.monitoring.report as r\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'numpy')], 'imported at import'\n"
        f"r.render_png({{'features': [], 'decision': {{'action': 'no_action'}}}}, Path({str(tmp_path)!r}) / 'x.png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot loaded'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert (tmp_path / "x.png").read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(("value", "decayed"), [(0.8601, "no"), (0.61, "yes")])
def test_the_report_shows_the_configured_bounds_and_the_decisions_verdict(value: float, decayed: str) -> None:
    """The monitoring job measures the metric only; the thresholds come from model.yaml and the verdict from
    the decision, both carried into what the report renders (the example sets roc_auc min 0.7)."""
    import datetime

    from helpers import EXAMPLE_CONFIGS, resolve

    from mlops_module.monitoring.decision import decide
    from mlops_module.monitoring.orchestration import report_result

    cfg = resolve(EXAMPLE_CONFIGS[0], "prom")
    assert cfg.performance is not None and cfg.performance.min == 0.7
    measured = {"metric": "roc_auc", "value": value, "rows": 5000}
    job_result = {**make_result(None), "performance": measured}
    perf = {"metric": cfg.performance.metric, "min": cfg.performance.min, "max": cfg.performance.max}
    decision = decide(job_result, method=cfg.drift.method, threshold=cfg.drift.threshold, share=cfg.drift.share,
                      min_rows=cfg.drift.min_rows, performance=perf, retrain_on=cfg.retrain.on,
                      now=datetime.datetime(2025, 5, 15, tzinfo=datetime.timezone.utc))
    assert decision.performance_decayed is (decayed == "yes")
    page = Page(render_html(report_result(job_result, cfg, decision)))
    assert page.summary["performance"] == f"roc_auc = {value:.4g} (min 0.7, max –) on 5,000 labelled rows"
    assert page.summary["performance decayed"] == decayed
