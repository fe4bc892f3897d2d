#!/usr/bin/env python3
"""Desktop smoke test in a real WebKit window: the built app under Xvfb, driven by tauri-driver +
WebKitWebDriver, against the fake OpenAI, in a fresh data dir and the session's real keychain.

Run by `make e2e` (inside scripts/keyring-session.sh). Screenshots go to target/e2e/.
Closing line: 'N passed, N failed'.
"""
import json
import re
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APP = os.path.join(ROOT, "target", "debug", "codex-vault")
FAKE = os.path.join(ROOT, "target", "debug", "fake-openai")
FAKE_NOTIFICATIONS = os.path.join(ROOT, "target", "debug", "fake-notifications")
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
        # The app's own home: autostart entries (~/.config/autostart, which ignores
        # XDG_CONFIG_HOME), WebKit caches and ~/.codex are the test's, never the user's.
        self.env["HOME"] = os.path.join(self.tmp, "home")
        os.makedirs(self.env["HOME"])
        self.env["WEBKIT_DISABLE_DMABUF_RENDERER"] = "1"
        # The sign-in's callback port (never the developer's 1455) and no real browser: the test
        # plays the browser by following the authorize redirect itself.
        self.callback_port = free_port()
        self.env["CODEX_VAULT_CALLBACK_PORTS"] = str(self.callback_port)
        self.env["CODEX_VAULT_NO_BROWSER"] = "1"

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
        # The app (started later by tauri-driver with this env) refreshes against the fake, never OpenAI.
        self.env["CODEX_VAULT_AUTH_BASE"] = self.fake_url
        self.env["CODEX_VAULT_UPSTREAM"] = self.fake_url + "/backend-api/codex"

    def notifications(self):
        """The session's desktop notification service, a fake that records each Notify call (the
        app's notifications arrive as D-Bus calls on the keyring session's bus)."""
        self.notes = os.path.join(self.tmp, "notifications.jsonl")
        p = self.start([FAKE_NOTIFICATIONS, self.notes], stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("fake-notifications did not take org.freedesktop.Notifications")

    def notified(self):
        try:
            with open(self.notes) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

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
        stack.notifications()
        driver = session(stack)
        # The UI re-renders lists live (log lines, cards): an element read mid-update is asked again.
        wait = WebDriverWait(driver, TIMEOUT, ignored_exceptions=[StaleElementReferenceException])

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

        made = {}

        def lists_imported_account():
            tokens = made["work"] = post(stack.fake_url + "/__admin/accounts", {"email": "e2e@corp.com", "plan": "team"})
            auth = post(stack.fake_url + "/__admin/auth_json", {"tokens": tokens})
            r = stack.cli("accounts", "import", "-", "--label", "work", stdin=json.dumps(auth))
            assert r.returncode == 0, r.stderr
            # Another process (the CLI) changed the store: the window shows it without a reload.
            started = time.monotonic()
            card = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="account-card"]')))
            print(f"     (the CLI's import showed in the window after {time.monotonic() - started:.2f} s)")
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

        def painted():
            """Waits two animation frames, so the X screen shows what the DOM now says."""
            driver.execute_async_script(
                "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));")

        def card_by_label(label):
            """The account card whose label is `label` (None while there is none)."""
            for card in driver.find_elements(By.CSS_SELECTOR, '[data-testid="account-card"]'):
                labels = card.find_elements(By.CSS_SELECTOR, '[data-testid="account-label"]')
                if labels and labels[0].text == label:
                    return card
            return None

        def wait_card(label, predicate=lambda card: True):
            return wait.until(lambda d: (lambda c: c if c is not None and predicate(c) else False)(card_by_label(label)))

        def badge(card):
            return card.find_element(By.CSS_SELECTOR, '[data-testid="status-badge"]').text

        def paste_auth_json():
            tokens = post(stack.fake_url + "/__admin/accounts", {"email": "paste@corp.com", "plan": "plus"})
            auth = post(stack.fake_url + "/__admin/auth_json", {"tokens": tokens})
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-account-button"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="tab-paste"]').click()
            area = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="paste-text"]')))
            # As a paste does it: the whole text at once, then one input event (typing it key by key is slow).
            driver.execute_script(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                area, json.dumps(auth, indent=2))
            preview = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="paste-preview"]')))
            assert "paste@corp.com" in preview.text and "Plus" in preview.text, preview.text
            assert preview.get_attribute("data-action") == "add", preview.get_attribute("data-action")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="paste-label"]').send_keys("pasted")
            screenshot(stack, "03-paste-preview.png")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="paste-import"]').click()
            result = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="paste-panel"] [data-testid="import-result"]')))
            assert "Imported account pasted" in result.text, result.text
            # The list updated from the core's event, behind the dialog, without a reload.
            card = wait_card("pasted", lambda c: "Healthy" in badge(c))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))
            text = card.text
            assert "paste@corp.com" in text and "Plus" in text, text
            summary = driver.find_element(By.CSS_SELECTOR, '[data-testid="summary"]').text
            assert "2 healthy" in summary, summary
            html = driver.page_source
            for t in (tokens["access_token"], tokens["refresh_token"], tokens["id_token"]):
                assert t[10:40] not in html, "token text in the page"
            screenshot(stack, "04-pasted-card.png")

        def rename():
            card = wait_card("pasted")
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-rename"]').click()
            field = card.find_element(By.CSS_SELECTOR, '[data-testid="rename-input"]')
            field.clear()
            field.send_keys("side job")
            screenshot(stack, "05-renaming.png")
            field.send_keys(Keys.ENTER)
            card = wait_card("side job")
            assert not card.find_elements(By.CSS_SELECTOR, '[data-testid="rename-input"]'), "rename field still open"
            notice = driver.find_element(By.CSS_SELECTOR, '[data-testid="notice"]').text
            assert "Renamed pasted to side job" in notice, notice
            screenshot(stack, "06-renamed.png")

        def disable():
            card = wait_card("side job")
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-toggle-disabled"]').click()
            card = wait_card("side job", lambda c: "Disabled" in badge(c))
            assert card.get_attribute("data-status") == "disabled", card.get_attribute("data-status")
            toggle = card.find_element(By.CSS_SELECTOR, '[data-testid="action-toggle-disabled"]')
            assert toggle.text == "Enable", toggle.text
            # The history shows it, newest first.
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-history"]').click()
            wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, '[data-testid="history-item"]'))
            kinds = [e.get_attribute("data-kind") for e in card.find_elements(By.CSS_SELECTOR, '[data-testid="history-item"]')]
            assert kinds[:3] == ["disabled", "renamed", "imported"], kinds
            screenshot(stack, "07-disabled-history.png")
            # The same window in the dark palette, for a look at both themes.
            driver.execute_script("document.documentElement.dataset.theme = 'dark'")
            painted()
            screenshot(stack, "08-dark.png")
            # The Add dialog in dark, on the Codex CLI tab with a CLI sign-in to preview (not imported).
            tokens = post(stack.fake_url + "/__admin/accounts", {"email": "cli@corp.com", "plan": "pro"})
            auth = post(stack.fake_url + "/__admin/auth_json", {"tokens": tokens})
            os.makedirs(stack.env["CODEX_HOME"], exist_ok=True)
            with open(os.path.join(stack.env["CODEX_HOME"], "auth.json"), "w") as f:
                json.dump(auth, f)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-account-button"]').click()
            driver.find_element(By.CSS_SELECTOR, '[data-testid="tab-codex-cli"]').click()
            preview = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="cli-preview"]')))
            assert "cli@corp.com" in preview.text, preview.text
            painted()
            screenshot(stack, "09-dark-codex-cli-preview.png")
            driver.execute_script("delete document.documentElement.dataset.theme")
            # Import it, letting the CLI go on through the broker: its file stays, one env line to add.
            driver.find_element(By.CSS_SELECTOR, '[data-testid="ownership-broker"]').click()
            driver.find_element(By.CSS_SELECTOR, '[data-testid="cli-import"]').click()
            env_line = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="ownership-env"]')))
            assert env_line.text.startswith("export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:"), env_line.text
            assert env_line.text.endswith("/oauth/token"), env_line.text
            assert "codex logout" in driver.find_element(By.CSS_SELECTOR, '[data-testid="ownership-warning"]').text
            assert os.path.exists(os.path.join(stack.env["CODEX_HOME"], "auth.json")), "broker must keep the CLI's file"
            screenshot(stack, "09b-codex-cli-imported-broker.png")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            # The card says the sign-in has a second holder, and where.
            def cli_card_with_flag(d):
                for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="account-card"]'):
                    if "cli@corp.com" in c.text and c.find_elements(By.CSS_SELECTOR, '[data-testid="shared-grant"]'):
                        return c
                return False
            cli_card = wait.until(cli_card_with_flag)
            shared = cli_card.find_element(By.CSS_SELECTOR, '[data-testid="shared-grant"]').text
            assert "auth.json" in shared and "log each other out" in shared, shared

        def revoked_needs_sign_in():
            # The fake revokes the grant; "Refresh now" finds out and the card turns terminal, live.
            post(stack.fake_url + f"/__admin/accounts/{made['work']['account_id']}/revoke", {})
            card = wait_card("work")
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-refresh"]').click()
            card = wait_card("work", lambda c: "Needs sign-in" in badge(c))
            detail = card.find_element(By.CSS_SELECTOR, '[data-testid="failure-detail"]').text
            assert "refresh_token_invalidated" in detail, detail
            reason = card.find_element(By.CSS_SELECTOR, '[data-testid="failure-reason"]').text
            assert reason, "no reason shown"
            r = stack.cli("accounts", "list", "--json")
            listed = json.loads(r.stdout)
            failure = next(a for a in listed if a["label"] == "work")["failure"]
            assert failure, (r.stdout[-3000:], r.stderr[-2000:])
            message = card.find_element(By.CSS_SELECTOR, '[data-testid="failure-message"]').text
            assert failure["message"] and failure["message"] in message, (failure, message)
            assert str(failure["http_status"]) in detail, detail
            assert card.find_elements(By.CSS_SELECTOR, '[data-testid="action-sign-in-again"]'), "no Sign in again"
            screenshot(stack, "10-needs-sign-in.png")
            driver.execute_script("document.documentElement.dataset.theme = 'dark'")
            painted()
            screenshot(stack, "11-needs-sign-in-dark.png")
            driver.execute_script("delete document.documentElement.dataset.theme")

        def notified_needs_sign_in():
            # The revoked account's failure episode raised one desktop notification (a Notify call
            # on the session bus) naming the account and why (once per episode: unit-tested in
            # notices.rs).
            wait.until(lambda d: any("work needs sign-in" in n["summary"] for n in stack.notified()))
            told = [n for n in stack.notified() if "work needs sign-in" in n["summary"]]
            assert len(told) == 1, stack.notified()
            assert "refresh_token_invalidated" in told[0]["body"], told

        def logs_view():
            # The app's own log file, read a page at a time: the revoked account's warning is in
            # it; the level filter and the search narrow it down.
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-logs"]').click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="log-line"]'))
            Select(driver.find_element(By.CSS_SELECTOR, '[data-testid="logs-level"]')).select_by_value("WARN")
            wait.until(lambda d: all(
                e.find_element(By.CSS_SELECTOR, ".lvl").text in ("WARN", "ERROR")
                for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="log-line"]')))
            search = driver.find_element(By.CSS_SELECTOR, '[data-testid="logs-search"]')
            search.send_keys("needs sign-in")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="logs-apply"]').click()
            wait.until(lambda d: (lines := d.find_elements(By.CSS_SELECTOR, '[data-testid="log-line"]'))
                       and all("needs sign-in" in e.text for e in lines))
            painted()
            screenshot(stack, "12-logs-view.png")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()

        def settings_notifications():
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-settings"]').click()
            box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="notify-all_capped"]')))
            assert box.is_selected(), "notifications are on by default"
            box.click()
            setting = lambda: json.loads(stack.cli("diagnostics", "--json").stdout)["settings"].get("notify.all_capped")
            wait.until(lambda d: setting() == "off")
            painted()
            screenshot(stack, "06d-settings-notifications.png")
            box.click()
            wait.until(lambda d: setting() == "on")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()

        def start_sign_in(label):
            """Opens the Sign in with ChatGPT tab, starts a sign-in labelled `label`, and returns
            the authorize address the app would open in the browser."""
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-account-button"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="tab-sign-in"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="signin-label"]'))).send_keys(label)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-start"]').click()
            return wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="signin-url"]'))).get_attribute("value")

        def sign_in_with_chatgpt():
            post(stack.fake_url + "/__admin/settings", {"registered_redirect_ports": [stack.callback_port]})
            post(stack.fake_url + "/__admin/login_identity", {"email": "browser@corp.com", "plan": "pro"})
            url = start_sign_in("browser")
            assert url.startswith(stack.fake_url + "/oauth/authorize?"), url
            assert "code_challenge_method=S256" in url, url
            assert f"redirect_uri=http%3A%2F%2Flocalhost%3A{stack.callback_port}%2Fauth%2Fcallback" in url, url
            assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="signin-waiting"]'), "no waiting state"
            screenshot(stack, "05b-sign-in-waiting.png")
            # The browser's part: the fake approves and redirects to the app's local callback.
            with urllib.request.urlopen(url, timeout=30) as r:
                assert r.status == 200, r.status
                r.read()
            result = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="signin-panel"] [data-testid="import-result"]')))
            assert "Signed in" in result.text and "browser" in result.text, result.text
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            card = wait_card("browser", lambda c: "Healthy" in badge(c))
            assert "browser@corp.com" in card.text and "Pro" in card.text, card.text

        def pasted_callback():
            # The browser is on another computer: the address it was sent to is pasted into the
            # sign-in tab. One from a wrong sign-in (its state changed) is refused and stores nothing.
            post(stack.fake_url + "/__admin/login_identity", {"email": "pasted@corp.com", "plan": "plus"})
            url = start_sign_in("pasted")

            class NoRedirect(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *args, **kwargs):
                    return None

            # The remote browser's part, stopped at the redirect it would follow.
            try:
                urllib.request.build_opener(NoRedirect).open(url, timeout=30)
                raise AssertionError("the authorize page did not redirect")
            except urllib.error.HTTPError as e:
                assert e.code in (302, 303), e.code
                callback = e.headers["Location"]
            assert "code=" in callback and "state=" in callback, callback
            before = len(json.loads(stack.cli("accounts", "list", "--json").stdout))
            field = driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-paste"]')
            field.send_keys(re.sub(r"state=[^&]+", "state=not-this-sign-in", callback))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-paste-submit"]').click()
            err = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="signin-paste-error"]')))
            assert err.get_attribute("data-code") == "login_state_mismatch", (err.get_attribute("data-code"), err.text)
            assert len(json.loads(stack.cli("accounts", "list", "--json").stdout)) == before, "a refused paste stored"
            painted()
            screenshot(stack, "05d-pasted-callback-refused.png")
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(callback)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="signin-paste-submit"]').click()
            result = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="signin-panel"] [data-testid="import-result"]')))
            assert "Signed in" in result.text and "pasted" in result.text, result.text
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            card = wait_card("pasted", lambda c: "Healthy" in badge(c))
            assert "pasted@corp.com" in card.text, card.text

        def device_code_sign_in():
            # The Device code tab: code + URL with copy buttons and a countdown, then the user
            # approves on "another device" (the fake's admin route) and the account appears.
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-account-button"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="tab-device"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="device-label"]'))).send_keys("remote")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="device-start"]').click()
            code = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="device-code"]'))).get_attribute("value")
            url = driver.find_element(By.CSS_SELECTOR, '[data-testid="device-url"]').get_attribute("value")
            assert url == stack.fake_url + "/codex/device", url
            assert len(code) == 10 and code[4] == "-", code
            countdown = driver.find_element(By.CSS_SELECTOR, '[data-testid="device-countdown"]').text
            assert countdown.startswith("14:") or countdown == "15:00", countdown
            assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="device-copy-code"]'), "no copy button"
            screenshot(stack, "05c-device-code.png")
            post(stack.fake_url + "/__admin/device",
                 {"user_code": code, "account": {"email": "device@corp.com", "plan": "plus"}})
            result = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="device-panel"] [data-testid="import-result"]')))
            assert "Signed in" in result.text and "remote" in result.text, result.text
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            card = wait_card("remote", lambda c: "Healthy" in badge(c))
            assert "device@corp.com" in card.text, card.text

        def endpoint_panel():
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-endpoint"]').click()
            panel = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="endpoint-panel"]')))
            state = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-state"]'))
            port_field = panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-port"]')

            def apply_port(port):
                port_field.send_keys(Keys.CONTROL, "a")
                port_field.send_keys(str(port))
                panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-port-apply"]').click()

            # A port some other program holds: explained, and nothing changes.
            with socket.socket() as held:
                held.bind(("127.0.0.1", 0))
                held.listen()
                taken = held.getsockname()[1]
                before = state.text
                apply_port(taken)
                err = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="endpoint-error"]')))
                assert err.get_attribute("data-code") == "port_in_use", err.get_attribute("data-code")
                assert str(taken) in err.text, err.text
                assert state.text == before, (before, state.text)
                screenshot(stack, "06a-endpoint-port-in-use.png")
            # A free port: the endpoint moves there, and the URL and snippet follow.
            port = free_port()
            apply_port(port)
            wait.until(lambda d: f"Running on 127.0.0.1:{port}" in state.text.replace("\n", " "))
            url = panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-url"]').text
            assert url == f"http://127.0.0.1:{port}/v1", url
            snippet = panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-snippet"]').text
            assert f'base_url = "http://127.0.0.1:{port}/v1"' in snippet and "model_provider" in snippet, snippet
            refresh_env = panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-refresh-env"]').text
            assert refresh_env == f"export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:{port}/oauth/token", refresh_env
            # Reveal shows the same key `endpoint info` reports; it is hidden until asked.
            key_el = panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-key"]')
            info = json.loads(stack.cli("endpoint", "info", "--json").stdout)
            assert info["key"] not in key_el.text, "key shown before Reveal"
            assert info["port"] == port and info["running"], info
            panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-key-reveal"]').click()
            try:
                wait.until(lambda d: key_el.text == info["key"])
            except Exception:
                raise AssertionError(f"revealed {key_el.text!r}, endpoint info has {len(info['key'])} chars")
            # A request through the endpoint is counted live on the panel.
            body = {"model": "gpt-5-codex", "instructions": "", "stream": True, "store": False,
                    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/responses", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json",
                                                  "authorization": f"Bearer {info['key']}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200, r.status
                r.read()
            row = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="served-row"]')))
            assert row.text.endswith("1"), row.text
            screenshot(stack, "06b-endpoint-panel.png")
            # A new key: the old one stops working at once.
            panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-key-rotate"]').click()
            panel.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-key-rotate-confirm"]').click()
            wait.until(lambda d: key_el.text not in ("", info["key"]) and "•" not in key_el.text)
            try:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/responses", data=json.dumps(body).encode(),
                    headers={"content-type": "application/json", "authorization": f"Bearer {info['key']}"}), timeout=30)
                raise AssertionError("the old key still works")
            except urllib.error.HTTPError as e:
                assert e.code == 401, e.code
            assert json.loads(stack.cli("endpoint", "info", "--json").stdout)["key"] == key_el.text
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="account-list"]')))

        def connect_codex():
            """Endpoint page: Connect writes our block into the test's CODEX_HOME config.toml (the make-default
            question answered Yes), shows the connection, and Disconnect gives the file back byte for byte."""
            home = stack.env["CODEX_HOME"]
            os.makedirs(home, exist_ok=True)
            path = os.path.join(home, "config.toml")
            original = '# my Codex settings: this comment must survive\nmodel = "gpt-5.5"  # mine\n\n[tui]\nnotifications = true\n'
            with open(path, "w") as f:
                f.write(original)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-endpoint"]').click()
            panel = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="codex-connect"]')))
            panel.find_element(By.CSS_SELECTOR, '[data-testid="codex-connect-button"]').click()
            wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="codex-connect-default-yes"]'))).click()
            row = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="codex-connection"]')))
            assert "default provider" in row.text and path in row.text, row.text
            text = open(path).read()
            info = json.loads(stack.cli("endpoint", "info", "--json").stdout)
            assert text.startswith('# my Codex settings: this comment must survive\nmodel = "gpt-5.5"  # mine\nmodel_provider = "codex-vault"\n'), text
            assert f'base_url = "http://127.0.0.1:{info["port"]}/v1"' in text, text
            assert info["key"] not in text, "no key in config.toml"
            notice = panel.find_element(By.CSS_SELECTOR, '[data-testid="codex-connect-notice"]').text
            assert "Connected" in notice, notice
            painted()
            screenshot(stack, "06e-endpoint-codex-connected.png")
            row.find_element(By.CSS_SELECTOR, '[data-testid="codex-disconnect"]').click()
            wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="codex-connection"]'))
            assert open(path).read() == original, open(path).read()
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="account-list"]')))

        def settings_theme():
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-settings"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="settings-panel"]')))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="theme-dark"]').click()
            wait.until(lambda d: d.execute_script("return document.documentElement.dataset.theme") == "dark")
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, '[data-testid="settings-saved"]'), "Saved"))
            # Kept by tauri-plugin-store in the app's data dir: the theme, and never a secret.
            found = []
            for root, _, files in os.walk(stack.env.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")):
                found += [os.path.join(root, f) for f in files if f == "prefs.json"]
            assert found, "no prefs.json written"
            prefs = json.load(open(found[0]))
            assert prefs["prefs"]["theme"] == "dark", prefs
            painted()
            screenshot(stack, "06c-settings-dark.png")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="theme-system"]').click()
            wait.until(lambda d: d.execute_script("return document.documentElement.dataset.theme") is None)
            # Autostart: off by default; on writes the session's autostart entry (starting in the
            # tray), off removes it. HOME is the test's own.
            autostart_dir = os.path.join(stack.env["HOME"], ".config", "autostart")
            box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="autostart"]')))
            assert not box.is_selected(), "autostart on by default"
            box.click()
            wait.until(lambda d: os.path.isdir(autostart_dir) and os.listdir(autostart_dir))
            entry = open(os.path.join(autostart_dir, os.listdir(autostart_dir)[0])).read()
            assert "--autostarted" in entry and "codex-vault" in entry, entry
            box.click()
            wait.until(lambda d: not os.listdir(autostart_dir))
            # About: the one version, the same as the CLI's.
            version = stack.cli("--version").stdout.split()[-1]
            shown = driver.find_element(By.CSS_SELECTOR, '[data-testid="about-version"]').text
            assert shown == version, (shown, version)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()

        def activity_page():
            try:
                activity_steps()
            finally:
                driver.execute_script("delete document.documentElement.dataset.theme")
                driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()

        def activity_steps():
            # Requests through the app's own endpoint against the fake upstream: the request log
            # (activity.db) records them, and the Activity page shows them, live.
            info = json.loads(stack.cli("endpoint", "info", "--json").stdout)

            def serve(model):
                body = {"model": model, "instructions": "", "stream": True, "store": False,
                        "input": [{"type": "message", "role": "user",
                                   "content": [{"type": "input_text", "text": "hi"}]}]}
                req = urllib.request.Request(f"http://127.0.0.1:{info['port']}/v1/responses",
                                             data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json",
                                                      "authorization": f"Bearer {info['key']}"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    assert r.status == 200, r.status
                    r.read()

            for model in ["gpt-5-codex", "gpt-5-codex", "gpt-5", "gpt-5-codex", "gpt-5"]:
                serve(model)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-activity"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="activity-panel"]')))
            # The log is flushed within a second of a request; the page reloads on the endpoint's news.
            rows = lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="request-row"]')
            wait.until(lambda d: len(rows(d)) >= 5)
            before = len(rows(driver))
            models = [e.get_attribute("textContent").strip() for e in driver.find_elements(
                By.CSS_SELECTOR, '[data-testid="totals-models-row"] th')]
            assert "gpt-5" in models and "gpt-5-codex" in models, models
            assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="totals-accounts-row"]'), "no account totals"

            def canvas_size(testid):
                return driver.execute_script(
                    "const c = document.querySelector(`[data-testid='${arguments[0]}'] canvas`);"
                    "return c ? [c.width, c.height] : null;", testid)

            for chart in ["chart-requests", "chart-tokens"]:
                size = wait.until(lambda d: canvas_size(chart))
                assert size[0] > 0 and size[1] > 0, (chart, size)
            # One more request while the page is open: it appears without a reload.
            serve("gpt-5-codex")
            wait.until(lambda d: len(rows(d)) > before)
            # A filter narrows the table; the CSV export is of the filtered table, to the path shown.
            Select(driver.find_element(By.CSS_SELECTOR, '[data-testid="activity-model"]')).select_by_value("gpt-5")
            wait.until(lambda d: len(rows(d)) == 2)
            # (textContent: the table is below the fold, and WebDriver's .text is empty off screen)
            shown_models = [r.find_elements(By.CSS_SELECTOR, '[role="cell"]')[2].get_attribute("textContent")
                            for r in rows(driver)]
            assert shown_models == ["gpt-5", "gpt-5"], shown_models
            driver.find_element(By.CSS_SELECTOR, '[data-testid="activity-export"]').click()
            shown = wait.until(EC.visibility_of_element_located(
                (By.CSS_SELECTOR, '[data-testid="activity-export-path"] code'))).text
            with open(shown) as f:
                lines = f.read().splitlines()
            assert len(lines) == 1 + 2, (shown, lines)
            Select(driver.find_element(By.CSS_SELECTOR, '[data-testid="activity-model"]')).select_by_value("")
            wait.until(lambda d: len(rows(d)) > 2)
            painted()
            screenshot(stack, "12-activity.png")
            driver.execute_script("document.querySelector('[data-testid=\"request-table\"]').scrollIntoView()")
            painted()
            screenshot(stack, "12b-activity-table.png")
            driver.execute_script("document.querySelector('[data-testid=\"activity-panel\"]').scrollIntoView()")
            # Dark: the charts are drawn again in the dark palette (a new canvas).
            old = driver.find_element(By.CSS_SELECTOR, '[data-testid="chart-requests"] canvas')
            driver.execute_script("document.documentElement.dataset.theme = 'dark'")
            wait.until(EC.staleness_of(old))
            assert canvas_size("chart-requests")[0] > 0
            painted()
            screenshot(stack, "13-activity-dark.png")

        def tray_icon():
            # The tray icon exists (libayatana-appindicator's window on this X screen); with no
            # indicator host here its menu cannot be opened, so that is left to the unit tests.
            tree = subprocess.run(["xwininfo", "-root", "-tree", "-display", stack.env["DISPLAY"]],
                                  capture_output=True, text=True, timeout=30).stdout
            assert "tray-icon tray app" in tree, tree[-2000:]

        def bulk_import():
            # A folder as another pool exports it: a CLIProxyAPI file, a sub2api export (one ChatGPT
            # row, one of another platform), an older copy of a held account, a broken file.
            folder = os.path.join(stack.tmp, "peer-export")
            os.makedirs(folder)
            cpa = post(stack.fake_url + "/__admin/accounts", {"email": "cpa@corp.com", "plan": "pro"})
            made["cpa"] = cpa
            s2a = post(stack.fake_url + "/__admin/accounts", {"email": "s2a@corp.com", "plan": "team"})
            old_work = post(stack.fake_url + "/__admin/auth_json", {"tokens": made["work"]})
            old_work["last_refresh"] = "2020-01-01T00:00:00Z"
            files = {
                "cliproxyapi-cpa.json": {"type": "codex", "email": "cpa@corp.com", "expired": "2030-01-01T00:00:00Z",
                                         "last_refresh": "2026-11-30T00:00:00Z", "account_id": cpa["account_id"],
                                         **{k: cpa[k] for k in ("id_token", "access_token", "refresh_token")}},
                "sub2api-export.json": {"type": "sub2api-data", "version": 1, "proxies": [], "accounts": [
                    {"name": "team-pool", "platform": "openai", "type": "oauth", "credentials": {
                        "chatgpt_account_id": s2a["account_id"],
                        **{k: s2a[k] for k in ("id_token", "access_token", "refresh_token")}}},
                    {"name": "other", "platform": "anthropic", "type": "oauth", "credentials": {"access_token": "x"}}]},
                "work-old-copy.json": old_work,
            }
            for name, doc in files.items():
                with open(os.path.join(folder, name), "w") as f:
                    json.dump(doc, f)
            with open(os.path.join(folder, "broken.json"), "w") as f:
                f.write('{"tokens": ')
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-account-button"]').click()
            wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))
            driver.find_element(By.CSS_SELECTOR, '[data-testid="tab-bulk"]').click()
            area = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="bulk-paths"]')))
            driver.execute_script(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                area, folder)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="bulk-preview-button"]').click()
            preview = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="bulk-preview"]')))
            rows = {r.get_attribute("data-place"): r.get_attribute("data-action")
                    for r in preview.find_elements(By.CSS_SELECTOR, '[data-testid="bulk-row"]')}
            assert rows == {"broken.json": "invalid", "cliproxyapi-cpa.json": "new",
                            "sub2api-export.json accounts[0]": "new", "work-old-copy.json": "kept_newer"}, rows
            summary = preview.find_element(By.CSS_SELECTOR, '[data-testid="bulk-summary"]').text
            assert summary == "Would import: 2 new, 0 updated, 1 kept newer; 0 duplicate, 1 invalid.", summary
            assert "must stop refreshing" in preview.find_element(By.CSS_SELECTOR, '[data-testid="bulk-note"]').text
            html = driver.page_source
            for t in (cpa["access_token"], cpa["refresh_token"], s2a["refresh_token"]):
                assert t[10:40] not in html, "token text in the page"
            painted()
            screenshot(stack, "14-bulk-import-preview.png")
            # Below the preview, in the dialog's own scroll area.
            button = driver.find_element(By.CSS_SELECTOR, '[data-testid="bulk-import-button"]')
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
            result = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="bulk-result"]')))
            summary = result.find_element(By.CSS_SELECTOR, '[data-testid="bulk-summary"]').text
            assert summary == "Imported: 2 new, 0 updated, 1 kept newer; 0 duplicate, 1 invalid.", summary
            wait_card("team-pool")
            wait_card("cpa")
            painted()
            screenshot(stack, "15-bulk-import-done.png")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="add-dialog-close"]').click()
            wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '[data-testid="add-dialog"]')))

        def reset_credits():
            # An account at its limit holding two reset credits: the usage poll reads them (its
            # interval shortened for the test through the store, as another process would, and
            # taken up by an endpoint restart), the card shows them, and Redeem spends one only
            # after the dialog is confirmed.
            tokens = post(stack.fake_url + "/__admin/accounts", {"email": "resets@corp.com", "plan": "plus"})
            aid = tokens["account_id"]
            auth = post(stack.fake_url + "/__admin/auth_json", {"tokens": tokens})
            path = os.path.join(stack.tmp, "resets.json")
            with open(path, "w") as f:
                json.dump(auth, f)
            r = stack.cli("accounts", "import", path, "--label", "resets")
            assert r.returncode == 0, r.stderr
            post(stack.fake_url + f"/__admin/accounts/{aid}/rate_limit", {"resets_at": int(time.time()) + 3600})
            post(stack.fake_url + f"/__admin/accounts/{aid}/usage",
                 {"primary_used_percent": 100.0, "secondary_used_percent": 40.0})
            post(stack.fake_url + f"/__admin/accounts/{aid}/reset_credits", {"count": 2, "expires_in_secs": 7 * 86400})
            db = sqlite3.connect(os.path.join(stack.env["CODEX_VAULT_HOME"], "codex-vault.db"), timeout=30)
            try:
                with db:
                    db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('endpoint.usage_poll_secs', '1')")
                driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-endpoint"]').click()
                state = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="endpoint-state"]')))
                driver.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-stop"]').click()
                wait.until(lambda d: state.get_attribute("data-running") == "false")
                driver.find_element(By.CSS_SELECTOR, '[data-testid="endpoint-start"]').click()
                wait.until(lambda d: state.get_attribute("data-running") == "true")
                driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()
                credits = lambda c: c.find_elements(By.CSS_SELECTOR, '[data-testid="reset-credits"]')
                card = wait_card("resets", lambda c: credits(c) and credits(c)[0].get_attribute("data-count") == "2")
                with db:
                    db.execute("DELETE FROM settings WHERE key = 'endpoint.usage_poll_secs'")
            finally:
                db.close()
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
            painted()
            screenshot(stack, "16-reset-credits-card.png")
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-redeem-reset"]').click()
            # Every card has its own (closed) dialog: the open one is the one shown.
            shown_dialogs = lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="redeem-dialog"]')
                                       if e.is_displayed()]
            dialog = wait.until(lambda d: (shown_dialogs(d) or [False])[0])
            assert "2 reset credits" in dialog.text, dialog.text
            spent = lambda: json.loads(urllib.request.urlopen(stack.fake_url + "/__admin/counters", timeout=10).read())
            assert spent()["reset_consume_calls"] == 0, "a credit spent before the confirmation"
            painted()
            screenshot(stack, "16b-redeem-dialog.png")
            dialog.find_element(By.CSS_SELECTOR, '[data-testid="redeem-confirm"]').click()
            wait.until(lambda d: not shown_dialogs(d))
            wait_card("resets", lambda c: credits(c) and credits(c)[0].get_attribute("data-count") == "1")
            n = spent()
            assert (n["reset_consume_calls"], n["reset_credits_spent"]) == (1, 1), n

        def backup_and_restore():
            # Settings → Backup writes a sealed file; a wrong passphrase is refused in the restore
            # dialog; an account removed since comes back paused, the others keep their tokens, and
            # it refreshes only after its card's Confirm.
            path = os.path.join(stack.tmp, "e2e-backup.age")
            fill = lambda el, text: driver.execute_script(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                el, text)
            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-settings"]').click()
            fill(wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="backup-path"]'))), path)
            fill(driver.find_element(By.CSS_SELECTOR, '[data-testid="backup-pass"]'), "correct horse battery")
            fill(driver.find_element(By.CSS_SELECTOR, '[data-testid="backup-pass-again"]'), "correct horse battery")
            driver.find_element(By.CSS_SELECTOR, '[data-testid="backup-write"]').click()
            result = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="backup-result"]')))
            assert path in result.text, result.text
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", result)
            painted()
            screenshot(stack, "17-backup-written.png")
            assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
            with open(path, "rb") as f:
                assert f.read(21) == b"age-encryption.org/v1", "not an age file"
            r = stack.cli("accounts", "remove", "cpa")
            assert r.returncode == 0, r.stderr
            refreshes = lambda: json.loads(urllib.request.urlopen(
                stack.fake_url + "/__admin/counters", timeout=10).read())["per_account"].get(
                    made["cpa"]["account_id"], {}).get("refresh_calls", 0)
            before = refreshes()

            button = driver.find_element(By.CSS_SELECTOR, '[data-testid="restore-open"]')
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
            dialog = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="restore-dialog"]')))
            assert "log each other" in dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-warning"]').text
            fill(dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-path"]'), path)
            fill(dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-pass"]'), "wrong horse battery")
            dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-run"]').click()
            err = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="restore-error"]')))
            assert err.get_attribute("data-code") == "backup_wrong_passphrase", err.get_attribute("data-code")
            assert card_by_label("cpa") is None, "a wrong passphrase restored something"
            painted()
            screenshot(stack, "17b-restore-wrong-passphrase.png")
            fill(dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-pass"]'), "correct horse battery")
            dialog.find_element(By.CSS_SELECTOR, '[data-testid="restore-run"]').click()
            report = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, '[data-testid="restore-report"]')))
            actions = [r.get_attribute("data-action") for r in report.find_elements(By.CSS_SELECTOR, '[data-testid="restore-row"]')]
            assert actions.count("added") == 1 and set(actions) == {"added", "kept_newer"}, actions
            painted()
            screenshot(stack, "17c-restore-dialog.png")
            report.find_element(By.CSS_SELECTOR, '[data-testid="restore-close"]').click()
            wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, '[data-testid="restore-dialog"]')))

            driver.find_element(By.CSS_SELECTOR, '[data-testid="nav-accounts"]').click()
            card = wait_card("cpa", lambda c: "Restored" in badge(c))
            assert card.find_elements(By.CSS_SELECTOR, '[data-testid="restored"]'), card.text
            assert not card.find_elements(By.CSS_SELECTOR, '[data-testid="action-toggle-disabled"]'), "Enable offered"
            assert refreshes() == before, "a restored account refreshed before it was confirmed"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-confirm-restored"]').click()
            shown = lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="confirm-restored-dialog"]')
                               if e.is_displayed()]
            confirm = wait.until(lambda d: (shown(d) or [False])[0])
            painted()
            screenshot(stack, "17d-confirm-restored.png")
            confirm.find_element(By.CSS_SELECTOR, '[data-testid="confirm-restored"]').click()
            wait.until(lambda d: not shown(d))
            card = wait_card("cpa", lambda c: "Restored" not in badge(c))
            assert not card.find_elements(By.CSS_SELECTOR, '[data-testid="restored"]'), card.text
            # It is an account like the others again: Refresh now reaches the fake.
            card.find_element(By.CSS_SELECTOR, '[data-testid="action-refresh"]').click()
            wait.until(lambda d: refreshes() > before)
            wait_card("cpa", lambda c: "Healthy" in badge(c))

        def single_instance():
            # A second launch hands over to the running app and exits; the first window stays.
            second = subprocess.run([APP], env=stack.env, capture_output=True, text=True, timeout=60)
            assert second.returncode == 0, (second.returncode, second.stderr[-2000:])
            assert driver.find_element(By.CSS_SELECTOR, '[data-testid="summary"]').text, "first window gone"

        check("empty_state", empty_state)
        check("lists_imported_account", lists_imported_account)
        check("paste_auth_json", paste_auth_json)
        check("rename", rename)
        check("sign_in_with_chatgpt", sign_in_with_chatgpt)
        check("pasted_callback", pasted_callback)
        check("device_code_sign_in", device_code_sign_in)
        check("endpoint_panel", endpoint_panel)
        check("connect_codex", connect_codex)
        check("settings_theme", settings_theme)
        check("activity_page", activity_page)
        check("tray_icon", tray_icon)
        check("single_instance", single_instance)
        check("disable", disable)
        check("revoked_needs_sign_in", revoked_needs_sign_in)
        check("notified_needs_sign_in", notified_needs_sign_in)
        check("logs_view", logs_view)
        check("settings_notifications", settings_notifications)
        check("bulk_import", bulk_import)
        check("reset_credits", reset_credits)
        check("backup_and_restore", backup_and_restore)
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
