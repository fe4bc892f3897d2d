#!/usr/bin/env python3
"""Desktop smoke test in a real WebKit window: the built app under Xvfb, driven by tauri-driver +
WebKitWebDriver, against the fake OpenAI, in a fresh data dir and the session's real keychain.

Run by `make e2e` (inside scripts/keyring-session.sh). Screenshots go to target/e2e/.
Closing line: 'N passed, N failed'.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APP = os.path.join(ROOT, "target", "debug", "codex-vault")
FAKE = os.path.join(ROOT, "target", "debug", "fake-openai")
SHOTS = os.path.join(ROOT, "target", "e2e")
TIMEOUT = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_port(port, proc, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # polling a port that is not listening yet: no event to await
    raise RuntimeError(f"{what} did not listen on {port}")


class Stack:
    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="codex-vault-e2e-")
        self.env = dict(os.environ)
        self.env["CODEX_VAULT_HOME"] = os.path.join(self.tmp, "vault")
        self.env["CODEX_HOME"] = os.path.join(self.tmp, "codex-home")
        self.env["WEBKIT_DISABLE_DMABUF_RENDERER"] = "1"

    def start(self, args, **kw):
        p = subprocess.Popen(args, env=self.env, **kw)
        self.procs.append(p)
        return p

    def xvfb(self):
        r, w = os.pipe()
        self.start(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"], pass_fds=(w,),
                   stderr=subprocess.DEVNULL)
        os.close(w)
        display = b""
        while not display.endswith(b"\n"):
            chunk = os.read(r, 16)
            if not chunk:
                raise RuntimeError("Xvfb exited before naming its display")
            display += chunk
        os.close(r)
        self.env["DISPLAY"] = ":" + display.decode().strip()

    def fake(self):
        p = self.start([FAKE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.fake_url = p.stdout.readline().strip()
        if not self.fake_url.startswith("http"):
            raise RuntimeError("fake-openai printed no URL")

    def cli(self, *args, stdin=None):
        return subprocess.run([APP, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60)

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def screenshot(stack, name):
    """The whole X screen via ImageMagick: WebKitWebDriver's own screenshot hangs on a Tauri window."""
    subprocess.run(["import", "-display", stack.env["DISPLAY"], "-window", "root", os.path.join(SHOTS, name)],
                   check=True, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def session(stack):
    port, native = free_port(), free_port()
    driver_bin = shutil.which("tauri-driver") or os.path.expanduser("~/.cargo/bin/tauri-driver")
    d = stack.start([driver_bin, "--port", str(port), "--native-port", str(native)],
                    stdout=subprocess.DEVNULL, stderr=None if os.environ.get("E2E_VERBOSE") else subprocess.DEVNULL)
    # tauri-driver answers before the WebKitWebDriver it starts does: wait for both.
    wait_port(port, d, "tauri-driver")
    wait_port(native, d, "WebKitWebDriver")
    opts = ArgOptions()
    opts.set_capability("browserName", "wry")
    opts.set_capability("tauri:options", {"application": APP})
    return webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=opts)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    results = []
    stack = Stack()
    driver = None
    try:
        stack.xvfb()
        stack.fake()
        driver = session(stack)
        wait = WebDriverWait(driver, TIMEOUT)

        def check(name, fn):
            try:
                fn()
                results.append((name, None))
                print(f"ok   {name}")
            except Exception as e:  # a failed step is reported, the run goes on to the next
                results.append((name, e))
                print(f"FAIL {name}: {e!r}")
                screenshot(stack, f"fail-{name}.png")

        def empty_state():
            el = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="empty-state"]')))
            assert "codex-vault accounts import" in el.text, el.text
            screenshot(stack, "01-empty-state.png")

        def lists_imported_account():
            tokens = post(stack.fake_url + "/__admin/accounts", {"email": "e2e@corp.com", "plan": "team"})
            auth = post(stack.fake_url + "/__admin/auth_json", {"tokens": tokens})
            r = stack.cli("accounts", "import", "-", "--label", "work", stdin=json.dumps(auth))
            assert r.returncode == 0, r.stderr
            driver.find_element(By.CSS_SELECTOR, '[data-testid="refresh-button"]').click()
            card = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="account-card"]')))
            text = card.text
            assert "work" in text and "e2e@corp.com" in text, text
            badge = card.find_element(By.CSS_SELECTOR, '[data-testid="status-badge"]').text
            assert "Healthy" in badge, badge
            summary = driver.find_element(By.CSS_SELECTOR, '[data-testid="summary"]').text
            assert "1 healthy" in summary, summary
            # No token text reaches the page.
            html = driver.page_source
            for t in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"]):
                assert t[10:40] not in html, "token text in the page"
            screenshot(stack, "02-account-listed.png")

        check("empty_state", empty_state)
        check("lists_imported_account", lists_imported_account)
    except Exception as e:
        results.append(("setup", e))
        print(f"FAIL setup: {e!r}")
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        stack.close()
    failed = sum(1 for _, e in results if e is not None)
    print(f"e2e: {len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
