"""`sprintdeck web ADDR` in a real browser: headless Chromium (Debian's, driven by Playwright's Python
package) opens the page of a real `web` process attached to a real `serve`.

The page sees the six pane titles and, after `?`, the help; two pages at once are two `watch`
processes under `web` and no manager of their own; closing a page ends its process, and stopping
`web`, or killing it, ends them all; a page whose `watch` is refused (serve is gone) says why; with the operator token a page's `:pause` is journaled under
the name of whoever runs `web`.  Binding beyond loopback warns; a port in use, a bad address, a manager that
does not answer and a missing textual-serve are said before serving, without a traceback; a
request another site makes through the visitor's browser is refused.

textual-serve draws through xterm.js on a canvas, so the text is not in the page's DOM: the tests
read xterm's own screen buffer (what it parsed from the stream and draws), getting hold of the
terminal object as textual.js stores it (`this.terminal = new Terminal(...)`) with a setter that an
init script puts on `Object.prototype` before the page's scripts run.
Waits are on what the processes print and the page shows, with generous guards; nothing asserts a time.
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import ROOT
from nats_server import NatsServer
from test_serve import ENV, GUARD, SPRINTDECK, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401 (fixture)
from test_watch_command import watched_plan

PANES = ("Tasks", "Agents", "Messages", "Locks", "Files", "Metrics")
CAPTURE_TERMINAL = """
window.sprintdeckTerminals = [];
Object.defineProperty(Object.prototype, "terminal", {configurable: true, set(value) {
  Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
  window.sprintdeckTerminals.push(value);
}});
"""
SCREEN_TEXT = """() => {
  const terminal = window.sprintdeckTerminals[0];
  if (!terminal) return "";
  const buffer = terminal.buffer.active, rows = [];
  for (let row = 0; row < buffer.length; row++) rows.push(buffer.getLine(row).translateToString(true));
  return rows.join("\\n");
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; each test opens pages of its own."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed (.ci/run installs it with apt-get)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def served(run_dir: Path) -> Iterator[str]:
    """A sprint that runs for the whole test (tasks of 10 minutes at the real pace); its address."""
    server = serve(watched_plan(run_dir, tasks=3, estimate="600s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--speed", "1")
    try:
        yield listening_on(server)
    finally:
        server.kill()


class Web:
    """A `sprintdeck web` process in a session of its own, so that it and every `watch` process it
    starts can be killed together whatever the test did."""

    def __init__(self, address: str, directory: Path, *extra: str) -> None:
        self.out, self.err = directory / "web.out", directory / "web.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.process = subprocess.Popen([*SPRINTDECK, "web", address, *extra], cwd=ROOT, env=ENV,
                                            stdout=stdout, stderr=stderr, start_new_session=True)

    def url(self) -> str:
        wait_for(lambda: self.out.read_text().startswith("http://"), "the URL web prints", self.process)
        return self.out.read_text().splitlines()[0]

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def finish(self) -> int:
        try:
            return self.process.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"web still running after {GUARD:g} s:\n{self.stderr()}") from None

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


@pytest.fixture
def start_web(run_dir: Path) -> Iterator[Callable[..., Web]]:
    started: list[Web] = []

    def start(address: str, *extra: str) -> Web:
        started.append(Web(address, run_dir, *extra))
        return started[-1]

    try:
        yield start
    finally:
        for web in started:
            web.kill()


def open_dashboard(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.add_init_script(CAPTURE_TERMINAL)
    page.goto(url)
    wait_until(page, lambda text: all(f"─ {pane} " in text for pane in PANES), "the six pane titles")
    return page


def wait_until(page: Page, shown: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + GUARD
    while not shown(text := page.evaluate(SCREEN_TEXT)):
        assert time.monotonic() < deadline, f"the page does not show {what} after {GUARD:g} s:\n{text}"
        page.wait_for_timeout(100)
    return text


def watch_processes(web: Web) -> list[str]:
    """The command lines of the sprintdeck processes under `web` (children, grandchildren...)."""
    found, pending = [], [web.process.pid]
    while pending:
        for children in Path(f"/proc/{pending.pop()}/task").glob("*/children"):
            try:
                kids = [int(kid) for kid in children.read_text().split()]
            except OSError:
                continue
            pending += kids
            found += [argv for kid in kids if (argv := _sprintdeck_argv(Path(f"/proc/{kid}")))]
    return found


def watchers_of(address: str) -> list[str]:
    """Every `watch ADDRESS` process on the machine, whoever its parent (an orphan included)."""
    return [argv for proc in Path("/proc").glob("[0-9]*")
            if (argv := _sprintdeck_argv(proc)) and f" watch {address}" in argv]


def connections_to(address: str) -> int:
    """How many connections the manager listening on unix:PATH holds (its side of each, which the
    kernel lists under the socket's path, state 03: connected)."""
    path = address.removeprefix("unix:")
    return sum(1 for line in Path("/proc/net/unix").read_text().splitlines()[1:]
               if line.split()[-1] == path and line.split()[5] == "03")


def _sprintdeck_argv(proc: Path) -> str:
    try:
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return ""
    return " ".join(argv) if "app.cli" in argv or "app.web_page" in argv else ""


def test_a_browser_sees_the_six_panes_of_the_served_sprint_and_presses_question_mark_for_the_help(
        served: str, start_web: Callable[..., Web], browser: Browser) -> None:
    web = start_web(served, "--port", "0")
    url = web.url()
    assert url.startswith("http://127.0.0.1:")  # loopback unless --host says otherwise
    assert f"the dashboard of {served} at {url} (read-only)" in web.stderr()
    assert "warning" not in web.stderr()
    page = open_dashboard(browser, url)
    text = wait_until(page, lambda text: "t1" in text and "alpha" in text, "the served sprint's tasks and agents")
    assert "watched · watch" in text and served in text  # the watched sprint, not one of its own
    page.locator(".xterm-screen").click()
    page.keyboard.press("?")
    help_text = wait_until(page, lambda text: "this help (j / k, g / G scroll it)" in text, "the help")
    assert "1–6" in help_text and "Tasks, Agents, Messages, Locks, Files, Metrics" in help_text


def test_two_pages_are_two_watch_processes_on_the_one_manager_and_end_with_their_page_or_with_web(
        served: str, start_web: Callable[..., Web], browser: Browser) -> None:
    web = start_web(served, "--port", "0")
    url = web.url()
    first, second = open_dashboard(browser, url), open_dashboard(browser, url)
    running = watch_processes(web)
    assert len(running) == 2, running  # one per page, and no `serve`: the pages share the manager
    assert all(f" watch {served}" in command for command in running), running
    wait_for(lambda: connections_to(served) == 2, "the manager to hold the two pages' connections")
    first.close()
    wait_for(lambda: len(watch_processes(web)) == 1, "the closed page's watch process to end", web.process)
    wait_for(lambda: connections_to(served) == 1, "the manager to drop the closed page's connection")
    wait_until(second, lambda text: "t1" in text, "the other page still attached")
    web.process.send_signal(signal.SIGTERM)
    assert web.finish() == 0, web.stderr()
    assert watchers_of(served) == [], "a page's watch process outlived web"


def test_a_killed_web_takes_its_pages_watch_processes_with_it(
        served: str, start_web: Callable[..., Web], browser: Browser) -> None:
    """Killed, web cannot tell the pages' processes to quit, and Textual's web driver does not quit
    when its input closes: without the parent-death signal the watcher would stay attached for good."""
    web = start_web(served, "--port", "0")
    open_dashboard(browser, web.url())
    assert len(watchers_of(served)) == 1
    web.process.kill()  # web alone, not its session
    web.process.wait()
    wait_for(lambda: watchers_of(served) == [], "the page's watch process to end with web")


def test_with_the_operator_token_a_page_operates_the_sprint_and_the_journal_names_who_runs_web(
        served: str, start_web: Callable[..., Web], browser: Browser, run_dir: Path) -> None:
    web = start_web(served, "--port", "0", "--token-file", str(run_dir / "run.tokens" / "operator-token"))
    url = web.url()
    assert f"the dashboard of {served} at {url};" in web.stderr()  # not read-only
    page = open_dashboard(browser, url)
    page.locator(".xterm-screen").click()
    page.keyboard.press(":")
    page.keyboard.type("pause")
    page.keyboard.press("Enter")
    wait_until(page, lambda text: "the manager did it" in text, "the manager's answer")
    wait_for(lambda: bool(records_of(run_dir / "run.jsonl", "operator_action")), "the operator action journaled")
    assert records_of(run_dir / "run.jsonl", "operator_action") == [
        {"action": "pause_sprint", "by": pwd.getpwuid(os.getuid()).pw_name}]


def test_a_page_opened_when_serve_is_gone_says_why_instead_of_a_splash_for_ever(
        run_dir: Path, start_web: Callable[..., Web], browser: Browser) -> None:
    server = serve(watched_plan(run_dir, tasks=1, estimate="600s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--speed", "1")
    address = listening_on(server)
    web = start_web(address, "--port", "0")
    url = web.url()
    server.kill()
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.add_init_script(CAPTURE_TERMINAL)
    page.goto(url)
    text = wait_until(page, lambda text: "Reload the page" in text, "why there is no dashboard")
    assert f"cannot connect to {address}: " in text and "(is serve running there?)" in text
    wait_for(lambda: watchers_of(address) == [], "the refused watch process to end")
    web.process.send_signal(signal.SIGTERM)
    assert web.finish() == 0
    printed = web.out.read_text() + web.stderr()
    assert printed.count(f"cannot connect to {address}") == 1 and "Traceback" not in printed, printed


def test_binding_beyond_loopback_warns_that_the_page_is_as_powerful_as_its_token(
        served: str, start_web: Callable[..., Web], run_dir: Path) -> None:
    web = start_web(served, "--host", "0.0.0.0", "--port", "0")
    url = web.url()
    warning = web.stderr()
    assert "warning: web listens on 0.0.0.0" in warning and "not only on loopback" in warning
    assert "the page is as powerful as the token it holds; it is read-only (no --token-file)" in warning
    token = run_dir / "run.tokens" / "operator-token"
    operator = start_web(served, "--host", "0.0.0.0", "--port", "0", "--token-file", str(token))
    operator.url()
    assert f"it holds the operator token of {token}: anyone who opens it can reassign" in operator.stderr()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert _get(port, "/", address=_this_machine()).status == 200  # it answers on another interface


def test_what_cannot_be_served_is_said_before_serving_without_a_traceback(
        served: str, run_dir: Path) -> None:
    def web(*args: str, python: tuple[str, ...] = tuple(SPRINTDECK)) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*python, "web", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                              timeout=GUARD)

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        in_use = web(served, "--port", str(port))
    assert in_use.returncode == 2
    assert f"sprintdeck: port {port} on 127.0.0.1 is in use" in in_use.stderr and "--port 0" in in_use.stderr
    nobody = web(f"unix:{run_dir}/nobody/sock", "--port", "0")
    assert nobody.returncode == 2
    assert f"cannot connect to unix:{run_dir}/nobody/sock: No such file or directory (is serve running there?)" in nobody.stderr
    bad = web("tcp:example.com:80")
    assert bad.returncode == 2 and "tcp listens and connects on loopback only" in bad.stderr
    wrong = run_dir / "wrong-token"
    wrong.write_text("not-the-operator-token\n")
    refused = web(served, "--port", "0", "--token-file", str(wrong))
    assert refused.returncode == 2 and f"{served} refused to be watched: wrong operator token" in refused.stderr
    without = web(served, "--port", "0", python=(sys.executable, "-S", "-m", "app.cli"))  # no site-packages
    assert without.returncode == 2
    assert "web needs textual-serve, which is not installed: pip install 'textual-serve>=1.1,<2'" in without.stderr
    for result in (in_use, nobody, bad, refused, without):
        assert result.stdout == "" and "Traceback" not in result.stderr  # no URL: nothing was served


def test_a_request_made_for_another_site_is_refused_and_starts_no_watch_process(
        served: str, start_web: Callable[..., Web]) -> None:
    web = start_web(served, "--port", "0")
    port = int(web.url().rsplit(":", 1)[1].strip("/"))
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    hijack = _get(port, "/ws", {**upgrade, "Origin": "http://evil.example"})
    assert hijack.status == 403
    assert "a page from 'http://evil.example' may not open this dashboard's session" in hijack.read().decode()
    rebound = _get(port, "/", host=f"evil.example:{port}")
    assert rebound.status == 403 and "loopback names only" in rebound.read().decode()
    assert watch_processes(web) == []
    assert _get(port, "/", host=f"localhost:{port}").status == 200


def _get(port: int, path: str, headers: dict[str, str] | None = None, host: str | None = None,
         address: str = "127.0.0.1") -> http.client.HTTPResponse:
    """GET `path` from `address`, saying `host` in the Host header (what a browser says)."""
    connection = http.client.HTTPConnection(address, port, timeout=GUARD)
    connection.putrequest("GET", path, skip_host=True)
    connection.putheader("Host", host or f"{address}:{port}")
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection.getresponse()


def _this_machine() -> str:
    """An address of this machine other than loopback (where the UDP socket would leave from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def test_over_a_nats_server_that_needs_a_login_web_passes_the_nats_options_to_its_pages(
        run_dir: Path, start_web: Callable[..., Web], browser: Browser) -> None:
    """`web nats://…/SPRINT --nats-user U --nats-password P`: the check before serving and each
    page's `watch` log in to the NATS server; the password reaches the pages through the
    environment, never on a command line."""
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store, "--user", "deck", "--pass", "s3cret").start()
    login = ["--nats-user", "deck", "--nats-password", "s3cret"]
    server = serve(watched_plan(run_dir, tasks=3, estimate="600s"), nats.url, run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--speed", "1", *login)
    try:
        address = listening_on(server)
        refused = start_web(address, "--port", "0")
        assert refused.finish() == 2
        assert "refused the connection: Authorization Violation" in refused.stderr(), refused.stderr()
        assert "Traceback" not in refused.stderr()
        web = start_web(address, "--port", "0", *login)
        page = open_dashboard(browser, web.url())
        wait_until(page, lambda text: "t1" in text and "alpha" in text, "the served sprint's tasks and agents")
        [watch] = watch_processes(web)
        assert f" watch {address} " in watch and "--nats-user deck" in watch and "s3cret" not in watch, watch
    finally:
        server.kill()
        nats.stop()
