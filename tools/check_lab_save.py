#!/usr/bin/env python3
"""Save every chapter from a real JupyterLab and check that the committed .md files do not change.

    pip install -e ".[lab]"            # JupyterLab and jupytext's extension
    python tools/check_lab_save.py [notebooks/02-mnist-kaiming.md ...]

The chapters and ``jupytext.toml`` are copied into a temporary git repository; ``jupyter lab``
serves it on a free loopback port; headless Chromium (driven as in ``tools/check_book.py``)
opens each chapter with jupytext's "Jupytext Notebook" viewer, waits for its kernel, marks it
changed and saves it, as a user pressing Ctrl+S would.  The check fails if ``git diff`` of the
copy is not empty afterwards.  Exit status 1 on a diff, 2 when JupyterLab or Chromium is missing.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_book  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SAVE = """(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (let i = 0; i < 600 && !(window.jupyterapp && jupyterapp.started); i++) await sleep(100);
  await jupyterapp.started; await jupyterapp.restored;
  const w = await jupyterapp.commands.execute('docmanager:open', {path: PATH, factory: 'Jupytext Notebook'});
  await w.context.ready; await w.sessionContext.ready;
  const kernel = () => w.sessionContext.session && w.sessionContext.session.kernel;
  for (let i = 0; i < 600 && !(kernel() && kernel().status === 'idle'); i++) await sleep(100);
  await sleep(1000);
  w.context.model.dirty = true;
  await w.context.save();
  const status = kernel() ? kernel().status : 'no kernel';
  await w.sessionContext.shutdown();
  w.dispose();
  return status;
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or shutil.which("jupyter")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not jupyter or subprocess.run([jupyter, "lab", "--version"], capture_output=True).returncode != 0:
        print('check_lab_save: JupyterLab is not installed; pip install -e ".[lab]"', file=sys.stderr)
        return 2
    if not Path(chromium).exists():
        print("check_lab_save: no Chromium; apt-get install chromium", file=sys.stderr)
        return 2
    chapters = [Path(a) for a in argv] or sorted((REPO / "notebooks").glob("*.md"))
    work = Path(tempfile.mkdtemp(prefix="lab-save-"))
    shutil.copytree(REPO / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    shutil.copy(REPO / "jupytext.toml", work)
    shutil.copy(REPO / ".gitignore", work)
    git = ["git", "-C", str(work), "-c", "user.email=check@localhost", "-c", "user.name=check"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "as committed"], check=True)
    port = free_port()
    log = open(Path(tempfile.mkdtemp(prefix="lab-save-log-")) / "lab.log", "wb")
    lab = subprocess.Popen([jupyter, "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
                            "--IdentityProvider.token=", "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
                            f"--ServerApp.root_dir={work}"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    browser = None
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        check_book.FLAGS = tuple(f for f in check_book.FLAGS if not f.startswith("--host-resolver"))
        browser = check_book.Chromium(chromium, timeout=120)
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", {}, session)
        browser.send("Page.navigate", {"url": f"http://127.0.0.1:{port}/lab"}, session)
        browser.wait_for("Page.loadEventFired", session, timeout=120)
        for chapter in chapters:
            rel = chapter.resolve().relative_to(REPO).as_posix()
            result = browser.send("Runtime.evaluate", {"expression": SAVE.replace("PATH", json.dumps(rel)),
                                                       "awaitPromise": True, "returnByValue": True}, session, timeout=180)
            if "exceptionDetails" in result:
                print(f"check_lab_save: saving {rel} failed: {result['exceptionDetails']}", file=sys.stderr)
                return 1
            print(f"saved {rel} from JupyterLab (kernel {result['result']['value']})")
    finally:
        if browser:
            browser.close()
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
        log.close()
    diff = subprocess.run(git + ["diff", "--stat"], capture_output=True, text=True).stdout
    untracked = subprocess.run(git + ["status", "--porcelain", "--untracked-files=all"], capture_output=True,
                               text=True).stdout
    if diff:
        print("check_lab_save: a JupyterLab save changed committed files:\n" + diff, file=sys.stderr)
        print(subprocess.run(git + ["diff"], capture_output=True, text=True).stdout[:4000], file=sys.stderr)
        return 1
    if untracked.strip():
        print("check_lab_save: the save left files that .gitignore does not cover:\n" + untracked, file=sys.stderr)
        return 1
    print(f"check_lab_save: {len(chapters)} chapter(s) saved from JupyterLab; git diff is empty ({work})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
