"""``simulator.figures.report`` and ``perpstress report``: one self-contained HTML file per results folder.

The reports are written from the small real run and batch folders of test_plots.py. Each must
hold its figures as embedded PNGs (valid, of the size the page says), no external resource,
the scenario, the designs side by side and the comparison tables; and it must open in headless
Chromium with every image loaded (skipped when Chromium is not installed).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from simulator import figures as plots
from simulator.figures import report as report_mod
from simulator.figures.report import write_report
from test_plots import png_size, results_folders

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)" width="(\d+)" height="(\d+)">')


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return results_folders(tmp_path_factory)


@pytest.fixture(scope="module")
def batch_report(folders, tmp_path_factory):
    return write_report(folders["batch"], tmp_path_factory.mktemp("reports") / "batch.html")


@pytest.fixture(scope="module")
def run_report(folders):
    from simulator.cli import main

    assert main(["report", str(folders["run"])]) == 0  # default: FOLDER/report.html
    return folders["run"] / "report.html"


def images(text: str) -> list[tuple[bytes, str, int, int]]:
    return [(base64.b64decode(b), alt, int(w), int(h)) for b, alt, w, h in IMG.findall(text)]


def check_self_contained(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//|file:)', text, re.I), "external resource"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert len(re.findall(r"<img\b", text)) == len(IMG.findall(text)), "an image that is not an embedded PNG"
    for data, alt, w, h in images(text):
        assert png_size(data) == (w, h), alt


def test_batch_report(batch_report, folders):
    text = batch_report.read_text(encoding="utf-8")
    check_self_contained(text)
    batch = plots.open_folder(folders["batch"])
    alts = [alt for _, alt, _, _ in images(text)]
    assert alts[:4] == ["design comparison", "who pays", "sweep heatmap: P(socialization)", "sweep heatmap: mean bad debt"]
    assert alts[4:] == [f"timeline of design {d}" for d in batch.designs]

    # scenario and the designs side by side, with their stages in order
    assert batch.scenario["description"] in text
    assert "Designs side by side" in text
    for d in batch.designs:
        assert f"{d}</th>" in text
    assert "ranking=pro_rata" in text and "surplus_policy=none" in text
    # every setting that drives results, defaults included (ranking, fill price, trigger, takeover, cap)
    for setting in ("price=bankruptcy", "trigger=", "takeover=true", "takeover=false", "cap_per_event="):
        assert setting in text, setting
    assert "swept: $0, $100,000" in text
    assert "$0 (set by the design; the sweep does not move it)" in text

    # one number format: no exponents, no cents on whole-dollar amounts, no "$-"
    assert not re.search(r"\d[eE][+-]\d", re.sub(r"<img[^>]*>|<script.*?</script>", "", text, flags=re.S))
    assert "$-" not in text and not re.search(r"\$\d{1,3}(,\d{3})+\.\d\d", text)

    # the headline: every cover, adding up to the bad debt, per design; n/a where a design has no stage
    res = batch.results
    head = text[text.index("Headline: where the bad debt went"):text.index("How often the waterfall")]
    rows = re.findall(r"<tr>(.*?)</tr>", head)
    cells = {re.sub(r"<[^>]+>|&nbsp;", "", r.split("</td>")[0]).strip(): re.findall(r'<td class="num">([^<]*)</td>', r)
             for r in rows}
    for i, d in enumerate(batch.designs):
        g = res[res["design"] == d]
        assert cells["bad debt (deficit)"][i] == report_mod._money(g["deficit_total"].mean())
        assert cells["sum of the covers"][i] == cells["bad debt (deficit)"][i]
        has_adl = "adl" in batch.stages(d)
        for label, key in (("ADL profit realised early (not a loss)", "adl_profit_taken"),
                           ("ADL haircut (cash lost vs mark)", "adl_haircut")):
            assert cells[label][i] == (report_mod._money(g[key].mean()) if has_adl else "n/a")
    assert cells["socialized"][batch.designs.index("fund_then_adl")] == "n/a"  # no socialize stage
    assert cells["backstop vault P&amp;L"] == ["n/a"] * 3  # no design has a backstop
    assert any(k.startswith("ADL fired because: ") for k in cells)
    # n/a in the comparison table, never bold, for a metric a design has no stage for
    table = text[text.index("Comparison table"):text.index("<h2>Figures")]
    assert re.search(r"fund_then_socialize</td><td[^>]*>\d+</td>(<td class=\"num\"[^>]*>n/a</td>){5}"
                     r"<td class=\"num\"[^>]*>n/a</td>", table)
    sig = re.findall(r'<span class="sig">([^<]*)</span>', text)
    assert all("n/a" not in x for x in sig)
    # the worst path says which runs it was chosen from, the same in every figure
    wc, wr = plots.worst_path(batch)
    assert plots.worst_path_text(batch) in text and "kept paths" in plots.worst_path_text(batch)

    # probabilities and the comparison table come from the batch's CSVs
    prob = pd.read_csv(folders["batch"] / "probabilities.csv")
    for cell in batch.cells:
        assert f"cell {cell}</summary>" in text
    p = prob[(prob["design"] == "fund_then_socialize")]["p_socialization"]
    assert f"{p.max():.0%}" in text
    cmp = pd.read_csv(folders["batch"] / "compare.csv")
    row = cmp[(cmp["metric"] == "deficit_total") & (cmp["design"] == batch.designs[0])].iloc[0]
    assert f"${row['mean']:,.2f}" in text or f"${row['mean']:,.0f}" in text
    assert "compare.csv of the batch" in text


def test_run_report(run_report, folders):
    text = run_report.read_text(encoding="utf-8")
    check_self_contained(text)
    assert [alt for _, alt, _, _ in images(text)] == ["cascade timeline", "who pays"]
    summary = plots.open_folder(folders["run"]).summary
    assert "Summary (DESIGN.md §6)" in text
    assert f"${summary['liquidation_notional']:,.0f}" in text
    assert f"{summary['max_cascade_depth']:,}" in text
    assert "order book" in text and "insurance fund" in text and "ADL" in text


def test_report_cli_errors(tmp_path, capsys):
    from simulator.cli import build_parser, main

    assert main(["report", str(tmp_path)]) == 2
    assert "not a results folder" in capsys.readouterr().err
    args = build_parser().parse_args(["report", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a results folder"):
        args.func(args)


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = _chromium()


#: Injected into a copy of the report by the browser test: measures the laid-out page and writes
#: what it finds on <body> (dump-dom then reads it). An image must fit its container and the
#: page; no text may be cut (an element whose content is wider than its box while it hides the
#: overflow, or a table wider than the page without its scroll box).
LAYOUT_CHECK = """
<script>
window.addEventListener('load', function () {
  var problems = [];
  var page = document.documentElement.clientWidth;
  function box(e) { return e.getBoundingClientRect(); }
  Array.prototype.forEach.call(document.images, function (img) {
    var r = box(img), c = box(img.parentElement);
    if (!(img.complete && img.naturalWidth > 0)) problems.push('not loaded: ' + img.alt);
    if (r.width < 50) problems.push('too small: ' + img.alt);
    if (r.right > c.right + 1 || r.left < c.left - 1) problems.push('image wider than its container: ' + img.alt);
    if (r.right > page + 1) problems.push('image beyond the page: ' + img.alt);
  });
  var sel = 'h1,h2,h3,p,td,th,figcaption,summary,span,code,li';
  Array.prototype.forEach.call(document.querySelectorAll(sel), function (e) {
    var st = getComputedStyle(e);
    var hides = /(hidden|clip)/.test(st.overflow + st.overflowX + st.overflowY) || st.textOverflow === 'ellipsis';
    if (hides && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1))
      problems.push('clipped text: ' + e.tagName + ' ' + e.textContent.slice(0, 60));
    var r = box(e);
    var scroller = e.closest('.wide');
    if (!scroller && r.width > 0 && r.right > page + 1) problems.push('text beyond the page: ' + e.tagName + ' ' + e.textContent.slice(0, 60));
  });
  if (document.documentElement.scrollWidth > page + 1) problems.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + page);
  Array.prototype.forEach.call(document.querySelectorAll('.wide'), function (w) {
    if (w.scrollWidth > w.clientWidth + 1) problems.push('table wider than the page: ' + w.textContent.slice(0, 60));
  });
  document.body.setAttribute('data-layout-checked', String(document.images.length));
  document.body.setAttribute('data-layout-problems', problems.length ? problems.join(' | ').replace(/"/g, "'") : 'none');
});
</script>
"""


def _chromium_cmd(tmp_path: Path, *args: str) -> list[str]:
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--window-size=1600,1200", *args,
    ]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)")
@pytest.mark.parametrize("which", ["batch", "run"])
def test_report_opens_in_headless_chromium(which, batch_report, run_report, tmp_path):
    """Every image loads, fits its container and the page; no text is clipped; a screenshot
    of the page is a real image."""
    report = batch_report if which == "batch" else run_report
    text = report.read_text(encoding="utf-8")
    n = len(re.findall(r"<img\b", text))
    checked = tmp_path / "checked.html"
    checked.write_text(text.replace("</body>", LAYOUT_CHECK + "</body>"), encoding="utf-8")
    proc = subprocess.run(_chromium_cmd(tmp_path, "--dump-dom", checked.resolve().as_uri()),
                          capture_output=True, text=True, timeout=180)
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, f"no DOM from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    tag = body.group(0)
    assert f'data-images-loaded="{n}/{n}"' in tag, tag
    assert 'data-report-ready="1"' in tag
    assert f'data-layout-checked="{n}"' in tag, tag
    assert 'data-layout-problems="none"' in tag, tag

    shot = tmp_path / "page.png"
    proc = subprocess.run(_chromium_cmd(tmp_path, f"--screenshot={shot}", report.resolve().as_uri()),
                          capture_output=True, text=True, timeout=180)
    assert shot.exists(), proc.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1600, 1200)
    import matplotlib.image as mimage

    assert mimage.imread(shot).std() > 0.01  # not a blank page


def test_run_summary_prints_every_cover_and_adl_beside_the_deficit(folders):
    from simulator.cli.run_cmd import summary_table

    summary = plots.open_folder(folders["run"]).summary
    text = summary_table(summary)
    money = {}
    for line in text.splitlines():
        label, _, value = line.strip().rpartition("  ")
        if value.lstrip("-").startswith("$"):
            money[label.strip()] = float(value.replace("$", "").replace(",", ""))
    covers = ["paid by insurance fund", "paid by backstop vault", "covered by ADL haircut", "socialized",
              "socialization pending", "venue's own loss"]
    assert all(c in money for c in covers)
    assert sum(money[c] for c in covers) == pytest.approx(money["deficit"], abs=len(covers))  # whole dollars
    assert money["ADL haircut (cash lost vs mark)"] == round(summary["adl_haircut"])
    assert money["ADL profit realised early"] == round(summary["adl_profit_taken"])
    assert "fired: insurance fund empty" in text
    assert "$-" not in text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)")
def test_layout_check_catches_overflow_and_clipping(tmp_path):
    """The browser test's layout check itself: a too-wide image and clipped text are reported."""
    png = plots.figure_bytes(plots.plot_timeline.__globals__["_new_figure"]((20, 2), 100), "png")
    b64 = base64.b64encode(png).decode()
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><div style="width:300px"><img src="data:image/png;base64,' + b64
                    + '" alt="wide" width="2000" height="200"></div><p style="width:40px;overflow:hidden;'
                    'white-space:nowrap">a long line of text that is cut</p>' + LAYOUT_CHECK + "</body></html>")
    proc = subprocess.run(_chromium_cmd(tmp_path, "--dump-dom", page.resolve().as_uri()),
                          capture_output=True, text=True, timeout=180)
    tag = re.search(r"<body[^>]*>", proc.stdout).group(0)
    assert "image wider than its container: wide" in tag and "clipped text: P" in tag, tag
