#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

    python tools/check_book.py [_build/html] [--out _build/check] [--chromium /usr/bin/chromium]

Each page is loaded from disk (``file://``, as a reader opens a downloaded book) with
the network switched off, and checked once its scripts, MathJax and images have run:

* **links**: every local link points at a file of the built book, and its ``#anchor``
  at an element of that page;
* **images**: every image loaded;
* **math**: every formula was typeset by MathJax, none shows a TeX error, and no raw
  TeX (``\\(``, ``\\sqrt{``, ``$…\\cdot…$``) is left in the text;
* **tracebacks**: no page shows a Python traceback;
* **verdicts**: no verdict box prints ``None``, ``nan`` or ``undefined``;
* **network**: no page asks for anything outside the book (the book must work offline);
* **legibility**: no figure of a cell output is shrunk below ``--min-scale`` of its size
  (``--min-scale 0`` turns this off), so its labels stay the size they were drawn at.

It saves a screenshot of the claims page (``--screenshot``, default
``book/claims.html``) and a JSON report under ``--out``.  Chromium is driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``): no port is opened and
nothing beyond the Python standard library is needed.  Exit status 1 when any
check fails, 2 when the browser could not be run.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         # offline: every host name fails to resolve at once, so a request for a CDN fails fast
         "--host-resolver-rules=MAP * ~NOTFOUND")
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}

# Runs in the page once it has loaded; returns what the checks need.
COLLECT = r"""
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const maths = [...document.querySelectorAll('.math')];
  let mathjax = 'no math on the page';
  if (maths.length) {
    const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
    const script = [...document.scripts].some(s => /mathjax/i.test(s.src));
    for (let i = 0; i < 150 && script && !ready(); i++) await sleep(100);
    if (ready()) {
      try { await MathJax.startup.promise; mathjax = 'typeset'; } catch (e) { mathjax = 'failed: ' + e; }
    } else {
      mathjax = script ? 'MathJax did not load' : 'the page has formulas but loads no MathJax';
    }
  }
  const imgs = [...document.images];
  for (const img of imgs) {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { /* reported below */ }
  }
  try { await document.fonts.ready; } catch (e) {}
  const skip = 'pre, code, script, style, textarea, mjx-container, .math, .highlight, kbd, samp';
  const rawTex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const tex = /\\\(|\\\)|\\\[|\\\]|\\(?:sqrt|frac|cdot|mathrm|mathbf|text|sum|alpha|sigma|mu|times|left|right)\b|\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(skip)) continue;
    const m = n.textContent.match(tex);
    if (m) rawTex.push(n.textContent.trim().slice(0, 120));
  }
  const verdictWord = /\b[A-Z]\d+[^:\n]{0,40}:\s*(CONFIRMED|NOT CONFIRMED|REFUTED|INCONCLUSIVE)\b/;
  const boxes = [...document.querySelectorAll('.cell_output blockquote, .cell_output .admonition, [class*="verdict"]')]
    .filter(b => b.matches('[class*="verdict"]') || verdictWord.test(b.innerText));
  const badValue = /(^|[^\w.])(None|nan|NaN|NaT|undefined)(?![\w])/;
  const text = document.body.innerText;
  const tracebacks = [];
  if (/Traceback \(most recent call last\)/.test(text)) tracebacks.push('the text "Traceback (most recent call last)"');
  for (const el of document.querySelectorAll('.output.traceback, .output.error, .cell_output .ansi-red-fg'))
    tracebacks.push((el.innerText || '').trim().split('\n').slice(0, 2).join(' | ').slice(0, 160));
  const article = document.querySelector('.bd-article') || document.querySelector('main') || document.body;
  const columnWidth = article.getBoundingClientRect().width;
  const clipped = [];
  for (const t of document.querySelectorAll('table')) {
    let box = t.parentElement, scrolls = false;
    for (; box && box !== document.body; box = box.parentElement) {
      const ox = getComputedStyle(box).overflowX;
      if (ox === 'auto' || ox === 'scroll') { scrolls = true; break; }
      if (ox === 'hidden' || ox === 'clip') break;
    }
    if (!scrolls && t.getBoundingClientRect().width > columnWidth + 2) {
      const cap = t.querySelector('caption');
      clipped.push((cap ? cap.innerText : t.innerText).trim().slice(0, 80));
    }
  }
  return {
    title: document.title,
    mathjax, nMath: maths.length,
    unrendered: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 80)),
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent),
    rawTex,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    brokenImages: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
    figures: imgs.filter(i => i.closest('.cell_output') && i.naturalWidth > 0)
      .map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth, shown: Math.round(i.getBoundingClientRect().width)})),
    verdicts: boxes.map(b => b.innerText.trim()),
    badVerdicts: boxes.filter(b => badValue.test(b.innerText)).map(b => {
      const t = b.innerText.trim(), i = t.search(badValue);
      return t.split('\n')[0] + ': …' + t.slice(Math.max(0, i - 90), i + 30).replace(/\s+/g, ' ') + '…';
    }),
    tracebacks, clipped, columnWidth: Math.round(columnWidth),
  };
})()
"""


class BrowserError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 of the child)."""

    def __init__(self, binary: str, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="check-book-chromium-")
        self.log = open(Path(self.profile) / "stderr.log", "wb")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire():  # in the child, before exec: the protocol reads fd 3 and writes fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, pass_fds=(3, 4), preexec_fn=wire)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self.proc.poll()}); its log: {self.log.name}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            event = self._read_message(deadline)
            if "method" in event:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
                self.events.append(event)


def page_files(html: Path) -> list[Path]:
    skip = {"_static", "_sources", "_images", "_sphinx_design_static"}
    return sorted(p for p in html.rglob("*.html") if not skip & set(p.relative_to(html).parts))


_IDS: dict[Path, set[str]] = {}


def ids_of(path: Path) -> set[str]:
    if path not in _IDS:
        text = path.read_text(errors="replace")
        _IDS[path] = set(re.findall(r'\bid="([^"]+)"', text)) | set(re.findall(r'\bname="([^"]+)"', text))
    return _IDS[path]


def broken_links(page: Path, links: list[str], html: Path) -> list[str]:
    out = []
    root = html.resolve()
    for href in dict.fromkeys(links):
        url = urlparse(href)
        if url.scheme in ("http", "https", "mailto", "javascript", "data", "tel"):
            continue  # outside the book: not checked offline
        if url.scheme != "file":
            out.append(f"{href} (scheme {url.scheme!r})")
            continue
        target = Path(unquote(url.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            out.append(f"{href} -> no such file")
            continue
        if root not in target.resolve().parents and target.resolve() != root:
            out.append(f"{href} -> outside the built book")
            continue
        fragment = unquote(url.fragment)
        if fragment and target.suffix == ".html" and fragment not in ids_of(target):
            out.append(f"{href} -> no element with id {fragment!r}")
    return out


def redirect_of(page: Path) -> str | None:
    """The target of a page that only redirects (``<meta http-equiv="refresh" content="0; url=...">``)."""
    m = re.search(r'<meta[^>]+http-equiv="refresh"[^>]+content="\d+;\s*url=([^"]+)"', page.read_text(errors="replace"),
                  re.IGNORECASE)
    return m.group(1) if m else None


def check_page(browser: Chromium, session: str, page: Path, html: Path, min_scale: float) -> dict:
    target = redirect_of(page)
    if target is not None:  # jupyter-book's index.html: check where it leads, nothing to render
        broken = broken_links(page, [(page.parent / target).resolve().as_uri()], html)
        return {"page": str(page.relative_to(html)), "title": f"redirect to {target}",
                "problems": {"broken links": broken} if broken else {}, "warnings": {}, "verdicts": 0,
                "formulas": 0, "figures": [], "column_width": None}
    browser.events = [e for e in browser.events if e.get("sessionId") != session]
    browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
    browser.wait_for("Page.loadEventFired", session)
    result = browser.send("Runtime.evaluate", {"expression": COLLECT, "awaitPromise": True, "returnByValue": True},
                          session)
    if "exceptionDetails" in result:
        raise BrowserError(f"the checking script failed on {page}: {result['exceptionDetails'].get('text')}")
    info = result["result"]["value"]
    events = [e for e in browser.events if e.get("sessionId") == session]
    requested = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
                 if e["method"] == "Network.requestWillBeSent"}
    network = sorted({u for u in requested.values() if urlparse(u).scheme in ("http", "https", "ws", "wss")})
    failed_loads = sorted({requested.get(e["params"]["requestId"], "?") for e in events
                           if e["method"] == "Network.loadingFailed" and not e["params"].get("canceled")})
    js_errors = [e["params"]["exceptionDetails"].get("exception", {}).get("description", "")
                 or e["params"]["exceptionDetails"].get("text", "") for e in events
                 if e["method"] == "Runtime.exceptionThrown"]
    problems: dict[str, list[str]] = {}

    def add(kind, items):
        if items:
            problems[kind] = list(items)

    add("broken links", broken_links(page, info["links"], html))
    add("images that did not load", info["brokenImages"])
    if info["nMath"] and info["mathjax"] != "typeset":
        add("MathJax", [info["mathjax"]])
    add("formulas left as raw TeX", info["unrendered"])
    add("TeX errors", info["mathErrors"])
    add("raw TeX in the text", info["rawTex"])
    add("tracebacks", info["tracebacks"])
    add("verdicts printing None/nan", info["badVerdicts"])
    add("network requests (the book must work offline)", network)
    add("resources that failed to load", [u for u in failed_loads if u not in network])
    if min_scale > 0:
        add(f"figures shrunk below {min_scale:.0%} of their size",
            [f"{f['src']}: {f['natural']} px shown at {f['shown']} px ({f['shown'] / f['natural']:.0%})"
             for f in info["figures"] if f["shown"] < min_scale * f["natural"]])
    add("tables wider than the column without a scroll box", info["clipped"])
    return {"page": str(page.relative_to(html)), "title": info["title"], "problems": problems,
            "warnings": {"JavaScript errors": js_errors} if js_errors else {},
            "verdicts": len(info["verdicts"]), "formulas": info["nMath"], "figures": info["figures"],
            "column_width": info["columnWidth"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", type=Path, help="the built book (default _build/html)")
    ap.add_argument("--out", type=Path, default=None, help="report and screenshot folder (default <html>/../check)")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium")
                    or shutil.which("chromium-browser") or "/usr/bin/chromium")
    ap.add_argument("--screenshot", default="book/claims.html",
                    help="page to screenshot, relative to html (default book/claims.html; '' for none)")
    ap.add_argument("--min-scale", type=float, default=0.8,
                    help="smallest shown/drawn width of a figure (default 0.8; 0 turns the check off)")
    ap.add_argument("--pages", nargs="*", help="only these pages (relative to html)")
    ap.add_argument("--warn", action="append", default=[], metavar="KIND",
                    help="report this kind of problem (a word of its heading, e.g. 'verdicts') as a warning "
                         "instead of failing; repeatable")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for each browser step, such as a page load (default 60)")
    args = ap.parse_args(argv)

    html = args.html.resolve()
    if not (html / "index.html").is_file():
        print(f"check_book: {html}/index.html not found; build the book first (make book)", file=sys.stderr)
        return 2
    out = (args.out or html.parent / "check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not Path(args.chromium).exists() and not shutil.which(args.chromium):
        print(f"check_book: no Chromium at {args.chromium}; install Debian's chromium or pass --chromium",
              file=sys.stderr)
        return 2
    pages = [html / p for p in args.pages] if args.pages else page_files(html)
    t0 = time.monotonic()
    browser = Chromium(args.chromium, timeout=args.timeout)
    reports = []
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            browser.send(method, {}, session)
        browser.send("Emulation.setDeviceMetricsOverride", VIEWPORT, session)
        for page in pages:
            report = check_page(browser, session, page, html, args.min_scale)
            for kind in [k for k in report["problems"] if any(w.lower() in k.lower() for w in args.warn)]:
                report["warnings"][kind] = report["problems"].pop(kind)
            reports.append(report)
            status = "ok" if not report["problems"] else "FAIL"
            print(f"{status:4}  {report['page']}  ({report['formulas']} formulas, {len(report['figures'])} figures, "
                  f"{report['verdicts']} verdicts)")
            for kind, items in report["problems"].items():
                print(f"        {kind}:")
                for item in items[:12]:
                    print(f"          - {item}")
                if len(items) > 12:
                    print(f"          ... and {len(items) - 12} more")
            for kind, items in report["warnings"].items():
                print(f"        warning, {kind}: {len(items)} (first: {items[0][:120]})")
        shot = html / args.screenshot if args.screenshot else None
        if shot is None:
            pass
        elif shot.is_file():
            browser.send("Page.navigate", {"url": shot.as_uri()}, session)
            browser.wait_for("Page.loadEventFired", session)
            browser.send("Runtime.evaluate", {"expression": COLLECT, "awaitPromise": True, "returnByValue": True},
                         session)
            png = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                               session)["data"]
            path = out / (Path(args.screenshot).stem + ".png")
            path.write_bytes(base64.b64decode(png))
            print(f"screenshot of {args.screenshot}: {path}")
        else:
            print(f"check_book: no page {args.screenshot} to screenshot", file=sys.stderr)
            reports.append({"page": args.screenshot, "problems": {"missing page": [args.screenshot]}})
    except BrowserError as e:
        print(f"check_book: {e}", file=sys.stderr)
        return 2
    finally:
        browser.close()
    failed = [r for r in reports if r["problems"]]
    (out / "report.json").write_text(json.dumps({"pages": reports, "seconds": round(time.monotonic() - t0, 1)},
                                                indent=1))
    print(f"check_book: {len(reports) - len(failed)} of {len(reports)} pages passed in "
          f"{time.monotonic() - t0:.0f} s (report: {out / 'report.json'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
