"""tools/check_book.py finds what a reader of the built book would see broken."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_book", REPO / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)

PAGE = """<!DOCTYPE html><html><head><title>{title}</title></head><body><article class="bd-article">
{body}
</article></body></html>"""


def write(root: Path, name: str, body: str, title: str = "page") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAGE.format(title=title, body=body))
    return path


def test_broken_links_checks_files_and_anchors(tmp_path):
    html = tmp_path / "html"
    index = write(html, "index.html", '<h1 id="top">x</h1>')
    write(html, "notebooks/a.html", '<p id="here">a</p>')
    links = [(html / "notebooks/a.html").as_uri() + "#here", (html / "notebooks/a.html").as_uri() + "#gone",
             (html / "notebooks/09-walkthrough").as_uri(), "https://example.org/x", index.as_uri() + "#top",
             (tmp_path / "outside.html").as_uri()]
    (tmp_path / "outside.html").write_text("x")
    broken = check_book.broken_links(index, links, html)
    assert len(broken) == 3
    assert any("#gone" in b and "no element" in b for b in broken)
    assert any("09-walkthrough" in b and "no such file" in b for b in broken)
    assert any("outside the built book" in b for b in broken)


def test_page_files_skip_static_folders(tmp_path):
    write(tmp_path, "index.html", "")
    write(tmp_path, "_static/x.html", "")
    write(tmp_path, "book/claims.html", "")
    assert [p.relative_to(tmp_path).as_posix() for p in check_book.page_files(tmp_path)] == \
        ["book/claims.html", "index.html"]


@pytest.mark.skipif(not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_the_browser_check_fails_on_what_a_reader_sees_broken(tmp_path):
    html = tmp_path / "_build" / "html"
    write(html, "index.html", '<p>fine <a href="book/claims.html">claims</a></p>')
    write(html, "book/claims.html", "<table><tr><td>A1</td></tr></table>", title="claims")
    write(html, "notebooks/bad.html", """
      <p>Inline <span class="math notranslate nohighlight">\\(\\sqrt{2}\\)</span> with no MathJax loaded.</p>
      <p>Raw text \\(C\\cdot H\\cdot W\\) in prose.</p>
      <img src="../_images/missing.png">
      <a href="09-method-a-cifar-walkthrough">walkthrough</a>
      <div class="cell_output"><blockquote><p><strong>B2: NOT CONFIRMED</strong> (profile: quick)</p>
        <p>Ours: first epoch at 90%: Random None, PatchesInit nan.</p></blockquote>
      <pre>Traceback (most recent call last):</pre></div>""")
    out = tmp_path / "_build" / "check"
    assert check_book.main([str(html), "--out", str(out)]) == 1
    report = {p["page"]: p for p in json.loads((out / "report.json").read_text())["pages"]}
    assert report["index.html"]["problems"] == {} and report["book/claims.html"]["problems"] == {}
    bad = report["notebooks/bad.html"]["problems"]
    for kind in ("broken links", "images that did not load", "MathJax", "formulas left as raw TeX",
                 "raw TeX in the text", "tracebacks", "verdicts printing None/nan"):
        assert kind in bad, kind
    assert (out / "claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
