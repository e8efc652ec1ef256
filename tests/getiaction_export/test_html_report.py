"""report.html in a real browser: Debian's headless Chromium opens each page from ``file://``.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, JSON messages ending in NUL), so no Python dependency and no port is needed.
For each page it records every console message (``Runtime.consoleAPICalled``), uncaught exception
(``Runtime.exceptionThrown``), browser log entry (``Log.entryAdded``: failed loads, Content-Security-Policy
violations) and network request (``Network.requestWillBeSent``); then it reads the element ids
from the DOM, each figure's rendered size, and a screenshot. A control page that logs an error and
fetches a URL checks that those are seen.

The reports come from real jobs run here (a Dummy policy: ONNX, and a parity failure), so the
figures hold measured parity and latency; the sweep report is built from their results.

Chromium comes from scripts/_browser.sh (scripts/test sources it; CHROMIUM may name another
binary). Without it the tests are skipped, unless ``GETIACTION_REQUIRE_BROWSER=1`` (CI) makes
that an error. ``python tests/getiaction_export/test_html_report.py JOB_DIR PNG`` saves the
screenshot of a job's report (docs/report.png is one, of ``policy=act format=all``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from getiaction_export.config import ExportConfig, InputSampleSchema, OnnxFormatSchema, PolicySpec
from getiaction_export.html_report import (
    REPORT_FILE,
    job_report_html,
    rollout_section,
    write_job_report,
    write_sweep_report,
)
from getiaction_export.job import run_export
from getiaction_export.summary import job_rows

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--window-size=1200,900", "--remote-debugging-pipe"]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLoad:
    """What the browser saw while loading one page, and what it shows."""

    url: str
    console: list[dict[str, Any]] = field(default_factory=list)
    """``{"source", "level", "text"}`` of every console message, exception and log entry."""
    requests: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    boxes: dict[str, list[float]] = field(default_factory=dict)
    """Per id asked for: ``[width, height]`` of the element's rendered ``<svg>`` (0 when there is none)."""
    screenshot: bytes = b""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.console if m["level"] in ("error", "warning", "assert")]

    @property
    def outside_requests(self) -> list[str]:
        """Requests other than the page itself (and inline ``data:``)."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe."""

    def __init__(self, binary: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.log = open(Path(self.profile).with_suffix(".log"), "w+b")  # noqa: SIM115 (closed in close())
        commands, self._to_browser = os.pipe()
        self._from_browser, replies = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child, before exec: the browser reads fd 3 and writes fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands, replies)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        # close_fds=False: Python's own descriptors are not inheritable (PEP 446); fds 3 and 4 are
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                        close_fds=False, preexec_fn=on_fds_3_and_4)
        os.close(commands)
        os.close(replies)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.profile, ignore_errors=True)

    def output(self) -> str:
        """The end of what the browser printed (for a failure's message)."""
        self.log.flush()
        return Path(self.log.name).read_bytes().decode(errors="replace")[-2000:]

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command; return its result (events that arrive meanwhile go to ``self.events``)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError as error:
            raise RuntimeError(f"Chromium is not running (exit code {self.process.poll()}): {self.output()}") from error
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result") or {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer in {self.timeout} s: {self.output()}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe: {self.output()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def load(self, path: Path, ids: tuple[str, ...] = (), width: int = 1200) -> PageLoad:
        """Open ``path`` in a new tab: its console, requests, element ids, figure sizes and a full-page screenshot."""
        url = Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        start = len(self.events)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        found = PageLoad(url)
        script = ("JSON.stringify({ids: [...document.querySelectorAll('[id]')].map(e => e.id),"
                  f" boxes: Object.fromEntries({json.dumps(list(ids))}.map(id => {{"
                  " const s = document.querySelector('#' + CSS.escape(id) + ' svg');"
                  " const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};"
                  " return [id, [r.width, r.height]]; })), height: document.documentElement.scrollHeight})")
        dom = json.loads(self.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                                   session)["result"]["value"])
        found.ids, found.boxes = dom["ids"], dom["boxes"]
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": dom["height"],
                                                             "scale": 1}}, session)
        found.screenshot = base64.b64decode(shot["data"])
        self.send("Target.closeTarget", {"targetId": target})
        for event in self.events[start:]:
            if event.get("sessionId") != session:
                continue
            params = event.get("params") or {}
            if event.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                found.console.append({"source": "console", "level": params.get("type"), "text": text})
            elif event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails") or {}
                found.console.append({"source": "exception", "level": "error",
                                      "text": (details.get("exception") or {}).get("description", details.get("text"))})
            elif event.get("method") == "Log.entryAdded":
                entry = params.get("entry") or {}
                found.console.append({"source": entry.get("source"), "level": entry.get("level"),
                                      "text": entry.get("text")})
            elif event.get("method") == "Network.requestWillBeSent":
                found.requests.append(str((params.get("request") or {}).get("url")))
        del self.events[start:]
        return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    binary = chromium_path()
    if binary is None:
        message = "no Chromium: scripts/_browser.sh installs Debian's chromium (or set CHROMIUM)"
        if os.environ.get("GETIACTION_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    chromium = Chromium(binary)
    try:
        chromium.send("Browser.getVersion")  # fails here, with the browser's own output, when it cannot start
        yield chromium
    finally:
        chromium.close()


def pixels(png: bytes) -> np.ndarray:
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(io.BytesIO(png), format="png"))


def dummy_job(folder: Path, **options: Any) -> dict[str, Any]:
    """A real job (Dummy policy, ONNX, opset 17) in-process; its result.json dict."""
    fmt = OnnxFormatSchema(opset_version=17, runtime_check=False, num_random_inputs=2, verify_batch_sizes=[1, 2],
                           **options)
    config = ExportConfig(policy=PolicySpec(target="getiaction.policies.Dummy"), input_sample=InputSampleSchema(),
                          format=fmt, policy_name="dummy")
    job = {"num": len(list(folder.parent.iterdir())), "override_dirname": folder.name, "overrides": [folder.name]}
    result = run_export(config, folder, echo=lambda line: None, job=job)
    return json.loads((folder / "result.json").read_text()) if (folder / "result.json").is_file() else result.report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-job sweep folder from real jobs: one passes, one fails parity (atol=rtol=0 against fp32 rounding)."""
    root = tmp_path_factory.mktemp("sweep")
    for name, options in (("format.atol=1e-05", {}), ("format.atol=0", {"atol": 0.0, "rtol": 0.0})):
        folder = root / name
        folder.mkdir()
        result = dummy_job(folder, **options)
        write_job_report(folder, result)
    return root


def rows_and_results(sweep: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    rows, results = [], {}
    for folder in sorted(p for p in sweep.iterdir() if p.is_dir()):
        rows += job_rows(folder, sweep)[0]
        results[folder.name] = json.loads((folder / "result.json").read_text())
    return rows, results


def assert_clean(page: PageLoad, ids: tuple[str, ...]) -> None:
    assert page.errors == [], page.errors
    assert page.outside_requests == [], page.outside_requests
    assert set(ids) <= set(page.ids), sorted(set(ids) - set(page.ids))
    for element, (width, height) in page.boxes.items():
        assert width > 200 and height > 100, (element, width, height)
    image = pixels(page.screenshot)
    assert image.shape[0] > 500 and image.shape[1] == 1200, image.shape
    assert float(image[..., :3].std()) > 0.05, "the screenshot is blank"


def test_a_job_report_renders_with_no_console_error_and_no_request(browser: Chromium, sweep: Path) -> None:
    folder = sweep / "format.atol=1e-05"
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "ok" and result["parity_cases"] and result["formats"]["onnx"]["latency"]
    page = browser.load(folder / REPORT_FILE, ids=("fig-parity", "fig-latency"))
    assert_clean(page, ("job-header", "formats-table", "fig-parity", "fig-latency"))
    assert "failure" not in page.ids and "rollout" not in page.ids
    html = (folder / REPORT_FILE).read_text()
    assert "http://" not in html.replace("http://www.w3.org/", "") and "https://" not in html and "<script" not in html
    measured = result["formats"]["onnx"]["latency"]
    assert f"{measured['runtime_ms']:.3g} ms" in html  # the bar's label is the job's own figure


def test_a_failed_job_still_gets_a_report_with_its_failure(browser: Chromium, sweep: Path) -> None:
    folder = sweep / "format.atol=0"
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "failed" and result["error_kind"] == "parity", result["error"]
    page = browser.load(folder / REPORT_FILE, ids=("fig-parity",))
    assert_clean(page, ("job-header", "failure", "formats-table", "fig-parity"))
    assert result["error"].split(":")[0] in (folder / REPORT_FILE).read_text()


def test_a_job_that_stopped_before_any_format_gets_a_report(browser: Chromium, tmp_path: Path) -> None:
    result = {"status": "failed", "error": "policy._target_: cannot import 'does.not.exist'", "error_kind": "config",
              "exit_code": 2, "stage": "build", "stage_failed": "build", "policy": {"name": "module"},
              "format": "onnx", "formats": {}}
    page = browser.load(write_job_report(tmp_path, result))
    assert_clean(page, ("job-header", "failure", "formats-table", "fig-parity-missing", "fig-latency-missing"))


def test_the_sweep_report_has_the_summary_table_and_both_figures(browser: Chromium, sweep: Path) -> None:
    rows, results = rows_and_results(sweep)
    from getiaction_export.summary import COLUMNS

    path = write_sweep_report(sweep, rows, results)
    assert path == sweep / REPORT_FILE
    page = browser.load(path, ids=("fig-parity", "fig-latency"))
    assert_clean(page, ("sweep-header", "summary-table", "fig-parity", "fig-latency"))
    html = path.read_text()
    assert html.count("<tr class=") == len(rows) and all(f">{row['sha256']}<" in html for row in rows)
    assert html.count("<th>") == len(COLUMNS)
    assert 'href="format.atol%3D0/report.html"' in html  # each job links to its own page, relative


def test_rollout_figures_render_per_format(browser: Chromium, sweep: Path, tmp_path: Path) -> None:
    result = json.loads((sweep / "format.atol=1e-05" / "result.json").read_text())
    rng = np.random.default_rng(0)
    steps = np.linspace(0, 1, 40)
    episodes = []
    for seed in range(3):
        path = np.stack([np.cos(3 * steps + seed), np.sin(2 * steps) + seed * 0.3], axis=1)
        drift = np.cumsum(rng.normal(0, 1e-3, size=path.shape), axis=0)
        episodes.append({"seed": seed, "torch_xy": path.tolist(), "artifact_xy": (path + drift).tolist(),
                         "action_gap": np.abs(rng.normal(0, 1e-6, size=40)).tolist(),
                         "success": {"torch": True, "artifact": seed != 2}})
    result["rollout"] = {"task": "synthetic", "plane": ["x", "y"],
                         "formats": {"onnx": {"episodes": episodes}, "openvino int8": {"episodes": episodes[:1]}}}
    page = browser.load(write_job_report(tmp_path, result), ids=("fig-rollout-onnx", "fig-rollout-openvino-int8"))
    assert_clean(page, ("rollout", "fig-rollout-onnx", "fig-rollout-openvino-int8", "fig-parity"))
    assert "success PyTorch 3/3, artifact 2/3" in rollout_section(result["rollout"])


def test_the_checks_see_console_errors_and_requests(browser: Chromium, tmp_path: Path) -> None:
    """The control: a page that logs an error and fetches an image is caught on both counts."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><p id="x">x</p><img src="http://127.0.0.1:9/missing.png">'
                    "<script>console.error('boom')</script></body></html>")
    loaded = browser.load(page)
    assert any(m["text"] == "boom" for m in loaded.errors), loaded.console
    assert loaded.outside_requests == ["http://127.0.0.1:9/missing.png"]
    assert "x" in loaded.ids


def test_a_job_report_renders_within_a_second(sweep: Path) -> None:
    result = json.loads((sweep / "format.atol=1e-05" / "result.json").read_text())
    job_report_html(result)  # matplotlib imported and its font cache read: the job pays that once
    start = time.perf_counter()
    job_report_html(result)
    assert time.perf_counter() - start < 1.5  # ~0.3 s here; generous for a loaded CI machine


def test_the_report_module_imports_neither_torch_nor_hydra() -> None:
    code = "import sys, getiaction_export.html_report; print(sorted({'torch', 'hydra'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def save_screenshot(job_dir: Path, png: Path, width: int = 1000) -> None:
    """Screenshot of ``job_dir``'s report (written from its result.json), reduced to a small palette PNG."""
    from PIL import Image

    result = json.loads((job_dir / "result.json").read_text())
    page = Path(tempfile.mkdtemp()) / REPORT_FILE
    page.write_text(job_report_html(result))
    binary = chromium_path()
    assert binary, "no Chromium"
    chromium = Chromium(binary)
    try:
        loaded = chromium.load(page, width=width)
    finally:
        chromium.close()
    image = Image.open(io.BytesIO(loaded.screenshot)).convert("RGB").quantize(colors=64)
    image.save(png, optimize=True)


if __name__ == "__main__":
    save_screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
