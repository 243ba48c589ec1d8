"""The drift report the monitoring DAG logs to MLflow: one self-contained HTML page and a PNG summary.

Both are rendered from the monitoring job's result dict (JSON, computed elsewhere): this module only
draws it. The HTML has no external CSS, JS, fonts or images, so it opens the same from an MLflow
artifact view, a mail attachment or an air-gapped stand; the histograms are inline SVG.

Everything taken from the result is data, never markup: every value goes through :func:`html.escape`
(feature names and categories come from users' tables), and text drawn by matplotlib is not parsed as
math. Values are read with ``.get``: a partial result (no features, no performance) still renders.

Imported in Airflow tasks: standard library only at import; matplotlib is imported by :func:`render_png`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HTML_NAME = "drift_report.html"
PNG_NAME = "drift_summary.png"
NULL = "–"  # en dash: what a null value shows as

_ACTION_CLASS = {"retrain": "retrain", "no_action": "no-action", "insufficient_data": "insufficient"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
header, section.block { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px;
                        margin-bottom: 16px; }
h1 { font-size: 1.4em; margin: 0 0 4px 0; }
h2 { font-size: 1.15em; margin: 0 0 12px 0; }
h3 { font-size: 1em; margin: 0 0 6px 0; overflow-wrap: anywhere; }
.meta { color: #57606a; margin: 2px 0; overflow-wrap: anywhere; }
.action { font-size: 2.2em; font-weight: 700; margin: 12px 0 4px 0; letter-spacing: 0.02em; }
.action.retrain { color: #cf222e; }
.action.no-action { color: #1a7f37; }
.action.insufficient { color: #9a6700; }
.action.other { color: #57606a; }
ul.reasons { margin: 4px 0 0 0; padding-left: 20px; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.summary dt { color: #57606a; }
dl.summary dd { margin: 0; }
.yes { color: #cf222e; font-weight: 600; }
.no { color: #1a7f37; font-weight: 600; }
table.features { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.features th, table.features td { border-bottom: 1px solid #d8dee4; padding: 5px 8px; text-align: right; }
table.features th:first-child, table.features td:first-child,
table.features th:nth-child(2), table.features td:nth-child(2) { text-align: left; }
table.features td:first-child { overflow-wrap: anywhere; max-width: 320px; }
table.features tr.drifted td { background: #ffebe9; }
td.verdict { font-weight: 600; }
tr.drifted td.verdict { color: #cf222e; }
tr.stable td.verdict { color: #1a7f37; }
.histograms { display: flex; flex-wrap: wrap; gap: 16px; }
figure.feature { margin: 0; padding: 10px; border: 1px solid #d8dee4; border-radius: 6px; background: #fff;
                 max-width: 100%; overflow-x: auto; }
figure.feature.drifted { border-color: #cf222e; }
figure.feature figcaption { color: #57606a; font-size: 0.9em; margin-top: 4px; }
svg text { font-family: inherit; }
.empty { color: #57606a; font-style: italic; }
"""


# --- values to text --------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Any value as escaped text: the only way dict values reach the page."""
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and non-numbers (what geometry can use)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    """A value for reading: 4 significant digits, integers with separators, null as an en dash (escaped)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) >= 1e4:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return _e(value)


def _pct(value: Any) -> str:
    """A share (0..1) as a percentage with 4 significant digits."""
    number = _number(value)
    if number is None:
        return _fmt(value)
    return f"{number * 100:.4g}%"


def _yes_no(value: Any) -> str:
    """A flag as a coloured yes/no (yes is the alarming answer in this report)."""
    if isinstance(value, bool):
        return '<span class="yes">yes</span>' if value else '<span class="no">no</span>'
    return _fmt(value)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _window(window: Any) -> str:
    if not isinstance(window, Mapping):
        return NULL
    return f"{_fmt(window.get('start'))} → {_fmt(window.get('end'))}"


def _features(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The scored features, highest score first (null or NaN scores last), so the worst is on top."""
    features = [f for f in result.get("features") or [] if isinstance(f, Mapping)]

    def key(feature: Mapping[str, Any]) -> float:
        score = _number(feature.get("score"))
        return -score if score is not None else math.inf

    return sorted(features, key=key)


def _reasons(decision: Mapping[str, Any]) -> list[Any]:
    reasons = decision.get("reasons")
    if reasons is None:
        return []
    return [reasons] if isinstance(reasons, str) or not isinstance(reasons, Sequence) else list(reasons)


def _verdict(feature: Mapping[str, Any]) -> str:
    return "drifted" if feature.get("drifted") is True else "stable"


# --- HTML ------------------------------------------------------------------------------------


def _header(result: Mapping[str, Any]) -> str:
    decision = _mapping(result.get("decision"))
    action = decision.get("action")
    css = _ACTION_CLASS.get(action, "other") if isinstance(action, str) else "other"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in _reasons(decision))
    parts = [
        "<header>",
        f"<h1>Drift report: {_fmt(result.get('model'))}</h1>",
        f'<p class="meta">stand <strong>{_fmt(result.get("stand"))}</strong> · champion version '
        f'<strong>{_fmt(result.get("version"))}</strong> · window <strong>{_window(result.get("window"))}</strong></p>',
        f'<p class="meta">Airflow run {_fmt(result.get("airflow_run_id"))}</p>',
        f'<div class="action {css}">{_fmt(action)}</div>',
    ]
    if decision.get("window") is not None:
        parts.append(f'<p class="meta">decision window {_window(decision.get("window"))}</p>')
    parts.append(f'<ul class="reasons">{reasons}</ul>' if reasons else '<p class="empty">no reasons given</p>')
    parts.append("</header>")
    return "\n".join(parts)


def _summary(result: Mapping[str, Any], features: Sequence[Mapping[str, Any]]) -> str:
    drifted = sum(1 for f in features if f.get("drifted") is True)
    rows = [
        ("reference rows", _fmt(result.get("reference_rows"))),
        ("current rows", f"{_fmt(result.get('current_rows'))} (at least {_fmt(result.get('min_rows'))} needed)"),
        ("drift method", f"{_fmt(result.get('method'))}, a feature drifts at score ≥ {_fmt(result.get('threshold'))}"),
        ("drifted features", f"{drifted} of {len(features)}: share {_pct(result.get('drifted_share'))} "
                             f"(dataset drift at ≥ {_pct(result.get('share_threshold'))})"),
        ("dataset drift", _yes_no(result.get("dataset_drift"))),
    ]
    performance = result.get("performance")
    if isinstance(performance, Mapping):
        rows.append(("performance", f"{_fmt(performance.get('metric'))} = {_fmt(performance.get('value'))} "
                                    f"(min {_fmt(performance.get('min'))}, max {_fmt(performance.get('max'))}) "
                                    f"on {_fmt(performance.get('rows'))} labelled rows"))
        rows.append(("performance decayed", _yes_no(performance.get("decayed"))))
    else:
        rows.append(("performance", "not measured" if performance is None else _fmt(performance)))
    items = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<section class="block"><h2>Dataset</h2><dl class="summary">\n{items}\n</dl></section>'


def _table(result: Mapping[str, Any], features: Sequence[Mapping[str, Any]]) -> str:
    if not features:
        return '<section class="block"><h2>Features</h2><p class="empty">no features were scored</p></section>'
    head = ("<tr><th>feature</th><th>kind</th>"
            f"<th>score ({_fmt(result.get('method'))})</th><th>PSI</th><th>KS</th><th>JS</th>"
            "<th>missing (reference)</th><th>missing (current)</th><th>verdict</th></tr>")
    rows = []
    for i, f in enumerate(features):
        verdict = _verdict(f)
        rows.append(
            f'<tr class="{verdict}"><td><a href="#feature-{i}">{_fmt(f.get("name"))}</a></td>'
            f"<td>{_fmt(f.get('kind'))}</td><td>{_fmt(f.get('score'))}</td><td>{_fmt(f.get('psi'))}</td>"
            f"<td>{_fmt(f.get('ks'))}</td><td>{_fmt(f.get('js'))}</td>"
            f"<td>{_pct(f.get('reference_missing'))}</td><td>{_pct(f.get('current_missing'))}</td>"
            f'<td class="verdict">{verdict}</td></tr>')
    body = "\n".join(rows)
    return (f'<section class="block"><h2>Features, highest score first</h2>'
            f'<table class="features">\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table></section>')


def _series(values: Any, n: int) -> list[float | None]:
    values = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else []
    return [_number(values[i]) if i < len(values) else None for i in range(n)]


def _histogram(result: Mapping[str, Any], feature: Mapping[str, Any]) -> str:
    """Reference vs current shares per bin as an inline SVG bar chart (bars side by side per bin)."""
    raw_labels = feature.get("labels")
    labels = [str(x) for x in raw_labels] if isinstance(raw_labels, Sequence) and not isinstance(raw_labels, str) \
        else []
    n = max(len(labels), *(len(v) if isinstance(v, Sequence) and not isinstance(v, str) else 0
                           for v in (feature.get("reference_shares"), feature.get("current_shares"))))
    labels += ["?"] * (n - len(labels))
    reference, current = _series(feature.get("reference_shares"), n), _series(feature.get("current_shares"), n)
    top = max([v for v in (*reference, *current) if v is not None and v > 0] or [1.0])

    group, left, title_h, plot_h, bottom = 34.0, 56.0, 46.0, 130.0, 86.0
    width = max(360.0, left + n * group + 12)
    height = title_h + plot_h + bottom
    base = title_h + plot_h
    bar = (group - 8) / 2

    def y(share: float) -> float:
        return base - plot_h * max(0.0, min(share, top)) / top

    name, verdict = str(feature.get("name")), _verdict(feature)
    heading = f"{_e(_shorten(name, 48))} · {_fmt(result.get('method'))} {_fmt(feature.get('score'))} · {verdict}"
    colour = "#cf222e" if verdict == "drifted" else "#1a7f37"
    out = [
        f'<svg role="img" aria-label="{_e(name)}: reference and current shares per bin" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-size="11">',
        f'<text x="{left:.0f}" y="16" font-size="13" font-weight="600" fill="{colour}">{heading}</text>',
        f'<rect x="{left:.0f}" y="26" width="10" height="10" fill="#8da0cb"/>'
        f'<text x="{left + 14:.0f}" y="35">reference</text>'
        f'<rect x="{left + 80:.0f}" y="26" width="10" height="10" fill="#fc8d62"/>'
        f'<text x="{left + 94:.0f}" y="35">current</text>',
    ]
    for tick in (0.0, top / 2, top):  # y axis: gridlines and share labels
        out.append(f'<line x1="{left - 4:.0f}" x2="{width - 8:.0f}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                   'stroke="#d8dee4"/>'
                   f'<text x="{left - 6:.0f}" y="{y(tick) + 4:.1f}" text-anchor="end">{_pct(tick)}</text>')
    for i, label in enumerate(labels):
        x0 = left + i * group + 4
        for j, (values, fill, which) in enumerate(((reference, "#8da0cb", "reference"),
                                                   (current, "#fc8d62", "current"))):
            share = values[i]
            if share is None:
                continue
            out.append(f'<rect x="{x0 + j * bar:.1f}" y="{y(share):.1f}" width="{bar:.1f}" '
                       f'height="{base - y(share):.1f}" fill="{fill}">'
                       f"<title>{_e(label)}: {which} {_pct(share)}</title></rect>")
        cx, ly = x0 + bar, base + 12
        out.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="end" transform="rotate(-40 {cx:.1f} {ly:.1f})">'
                   f"<title>{_e(label)}</title>{_e(_shorten(label, 14))}</text>")
    if not n:
        out.append(f'<text x="{left + 8:.0f}" y="{base - plot_h / 2:.0f}" fill="#57606a">no bins</text>')
    out.append("</svg>")
    return "".join(out)


def _histograms(result: Mapping[str, Any], features: Sequence[Mapping[str, Any]]) -> str:
    if not features:
        return ""
    figures = []
    for i, f in enumerate(features):
        verdict = _verdict(f)
        figures.append(
            f'<figure class="feature {verdict}" id="feature-{i}"><h3>{_fmt(f.get("name"))}</h3>'
            f"{_histogram(result, f)}"
            f"<figcaption>{_fmt(f.get('kind'))} · score {_fmt(f.get('score'))} · {verdict} · rows "
            f"{_fmt(f.get('reference_rows'))} reference / {_fmt(f.get('current_rows'))} current · missing "
            f"{_pct(f.get('reference_missing'))} / {_pct(f.get('current_missing'))}</figcaption></figure>")
    return ('<section class="block"><h2>Distributions: reference vs current share per bin</h2>'
            f'<div class="histograms">\n{chr(10).join(figures)}\n</div></section>')


def render_html(result: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML document (inline CSS and SVG, nothing fetched)."""
    features = _features(result)
    title = f"Drift report: {_fmt(result.get('model'))} on {_fmt(result.get('stand'))}"
    body = "\n".join([_header(result), _summary(result, features), _table(result, features),
                      _histograms(result, features)])
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


# --- PNG -------------------------------------------------------------------------------------


def render_png(result: Mapping[str, Any], path: Path) -> Path:
    """A one-glance PNG: each feature's score as a bar (drifted in red) against the threshold line.

    Drawn on a bare ``Figure`` with the Agg canvas: no pyplot, no global backend switch, safe in a worker.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    features = _features(result)
    names = [_shorten(str(f.get("name")), 40) for f in features]
    scores = [_number(f.get("score")) for f in features]
    drifted = [f.get("drifted") is True for f in features]
    threshold = _number(result.get("threshold"))

    fig = Figure(figsize=(10.0, max(3.5, 1.6 + 0.4 * len(features))), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(features)))
    if features:
        ax.barh(positions, [s or 0.0 for s in scores], color=["#cf222e" if d else "#8da0cb" for d in drifted])
        ax.set_yticks(positions, names, parse_math=False)
        ax.invert_yaxis()  # highest score on top, as in the HTML table
        for pos, score in zip(positions, scores, strict=True):
            ax.text(score or 0.0, pos, f" {_fmt(score)}", va="center", fontsize=9, parse_math=False)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no features were scored", transform=ax.transAxes, ha="center", va="center",
                color="#57606a")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    right = max([s for s in scores if s is not None] + [threshold or 0.0, 0.0])
    ax.set_xlim(0.0, right * 1.2 if right > 0 else 1.0)
    ax.set_xlabel(f"drift score ({result.get('method')})", parse_math=False)
    handles: list[Any] = [Patch(color="#cf222e", label="drifted"), Patch(color="#8da0cb", label="stable")]
    if threshold is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}"))
    ax.legend(handles=handles, loc="lower right", fontsize=9)
    ax.grid(axis="x", color="#d8dee4")
    ax.set_axisbelow(True)

    window, decision = _mapping(result.get("window")), _mapping(result.get("decision"))
    title = (f"{_shorten(str(result.get('model')), 60)} on {_shorten(str(result.get('stand')), 30)}, "
             f"champion v{_shorten(str(result.get('version')), 20)}\n"
             f"window {window.get('start', NULL)} → {window.get('end', NULL)}    "
             f"decision: {decision.get('action', NULL)}")
    ax.set_title(title, loc="left", fontsize=11, parse_math=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def write_report(result: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """Both artifacts into ``directory`` (created if missing), under the names the DAG logs to MLflow."""
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / HTML_NAME
    html_path.write_text(render_html(result), encoding="utf-8")
    return html_path, render_png(result, directory / PNG_NAME)
