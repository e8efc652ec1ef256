"""report.html in a real browser: Debian's headless Chromium opens each page from ``file://``.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: file
descriptors 3 and 4, JSON messages ending in NUL), so no Python dependency and no port is needed.
For each page it records every console message (``Runtime.consoleAPICalled``), uncaught exception
(``Runtime.exceptionThrown``), browser log entry (``Log.entryAdded``: failed loads, Content-Security-Policy
violations) and network request (``Network.requestWillBeSent``); then it reads the element ids
from the DOM, each figure's rendered size, and a screenshot. A control page that logs an error and
fetches a URL checks that those are seen.

The reports come from real jobs run here (a Dummy policy: ONNX, and a parity failure), so the
figures hold measured parity and latency; the sweep report is built from their results. The rollout
pages come from real ``rollout=pusht`` jobs too (ACT fitted to PushT, one episode of 40 steps):
``format=all`` with the checkpoint and ONNX, and ONNX fp16 held to a bound it cannot meet.

Chromium comes from scripts/_browser.sh (scripts/test sources it; CHROMIUM may name another
binary). Without it the tests are skipped, unless ``GETIACTION_REQUIRE_BROWSER=1`` (CI) makes
that an error. ``python tests/getiaction_export/test_html_report.py JOB_DIR PNG`` saves the
screenshot of a job's report (docs/report.png is one, of ``policy=act format=all``); ``--section ID``
only that part of it (docs/rollout.png: ``--section rollout`` of ``policy=act rollout=pusht format=all
format.formats=[onnx,openvino_int8]``).
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

from getiaction_export.config.preflight import CONFIG_MODULE
from getiaction_export.config.schemas import ExportConfig, InputSampleSchema, OnnxFormatSchema, PolicySpec, policy_name
from getiaction_export.config.validation import validate
from getiaction_export.job import run_export
from getiaction_export.machine import cpu_line, describe_machine, isa_features, runtimes_line
from getiaction_export.report.html import (
    REPORT_FILE,
    job_report_html,
    sweep_report_html,
    write_job_report,
    write_sweep_report,
)
from getiaction_export.report.parts import cpu_text
from getiaction_export.report.rollout import rollout_section
from getiaction_export.report.rollout_figures import gap_text
from getiaction_export.report.table import COLUMNS, job_rows

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

    def load(self, path: Path, ids: tuple[str, ...] = (), width: int = 1200, section: str | None = None) -> PageLoad:
        """Open ``path`` in a new tab: its console, requests, element ids, figure sizes and a full-page screenshot.

        With ``section`` (an element id) the screenshot is of that element only (with a small margin).
        """
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
                  " return [id, [r.width, r.height]]; })), height: document.documentElement.scrollHeight,"
                  f" section: (() => {{ const e = document.getElementById({json.dumps(section or '')});"
                  " if (!e) return null; const r = e.getBoundingClientRect();"
                  " return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; })()})")
        dom = json.loads(self.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                                   session)["result"]["value"])
        found.ids, found.boxes = dom["ids"], dom["boxes"]
        clip = {"x": 0, "y": 0, "width": width, "height": dom["height"], "scale": 1}
        if section:
            if dom["section"] is None:
                raise KeyError(f"no element #{section} in {url}")
            left, top, box_width, box_height = dom["section"]
            clip = {"x": max(left - 12, 0), "y": max(top - 8, 0), "width": min(box_width + 24, width),
                    "height": box_height + 16, "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                         session)
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


ROLLOUT_JOBS = {
    # the checkpoint (bit-identical: every gap 0) and ONNX fp32 (gaps ~1e-5 px, bound 0.01 px)
    "format.formats=[torch,onnx],format=all": ("format=all", "format.formats=[torch,onnx]"),
    # ONNX fp16 drifts ~0.1 px in 40 steps: beyond a bound of 0.01 px, a failed rollout (exit code 4)
    "format.precision=fp16,rollout.max_gap.fp16=0.01": ("format.precision=fp16", "+rollout.max_gap.fp16=0.01"),
}
ROLLOUT_QUICK = ("policy=act", "rollout=pusht", "rollout.episodes=1", "rollout.steps=40", "format.opset_version=17",
                 "format.latency=false", "format.verify_batch_sizes=[1]", "format.num_random_inputs=1")


def rollout_job(folder: Path, *overrides: str) -> dict[str, Any]:
    """A real ``rollout=pusht`` job in-process, composed like the CLI composes it; its result.json dict."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*ROLLOUT_QUICK, *overrides])
    GlobalHydra.instance().clear()
    config = validate(cfg, policy_name(cfg))
    job = {"num": len(list(folder.parent.iterdir())), "override_dirname": folder.name, "overrides": list(overrides)}
    run_export(config, folder, echo=lambda line: None, job=job)
    return dict(json.loads((folder / "result.json").read_text()))


@pytest.fixture(scope="module")
def rollout_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep folder of the two :data:`ROLLOUT_JOBS` (~5 s each here); each job writes its own report.html."""
    root = tmp_path_factory.mktemp("rollout-sweep")
    for name, overrides in ROLLOUT_JOBS.items():
        folder = root / name
        folder.mkdir()
        rollout_job(folder, *overrides)
    return root


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
    path = write_sweep_report(sweep, rows, results)
    assert path == sweep / REPORT_FILE
    page = browser.load(path, ids=("fig-parity", "fig-latency"))
    assert_clean(page, ("sweep-header", "summary-table", "fig-parity", "fig-latency"))
    html = path.read_text()
    assert html.count("<tr class=") == len(rows) and all(f">{row['sha256']}<" in html for row in rows)
    assert html.count("<th>") == len(COLUMNS)
    assert 'href="format.atol%3D0/report.html"' in html  # each job links to its own page, relative
    assert "sweep-rollout" not in page.ids and "rollout-table" not in page.ids  # no job rolled out


def rollout_rows(html: str) -> list[str]:
    """The ``<tr>`` lines of the page's ``rollout-table`` body."""
    table = html.split('id="rollout-table"', 1)[1].split("</tbody>", 1)[0]
    return [line for line in table.splitlines() if line.startswith("<tr class=")]


def test_a_rollout_job_report_has_the_table_and_a_figure_per_format(browser: Chromium, rollout_sweep: Path) -> None:
    folder = rollout_sweep / "format.formats=[torch,onnx],format=all"
    result = json.loads((folder / "result.json").read_text())
    rollout = result["rollout"]
    assert result["status"] == "ok" and rollout["status"] == "ok" and list(rollout["formats"]) == ["torch", "onnx"]
    torch_run, onnx_run = rollout["formats"]["torch"], rollout["formats"]["onnx"]
    assert torch_run["max_state_gap"] == 0.0 and 0 < onnx_run["max_state_gap"] <= onnx_run["max_gap"] == 0.01
    assert len(onnx_run["episodes"][0]["state_gap"]) == 41  # the initial state and 40 steps

    page = browser.load(folder / REPORT_FILE, ids=("fig-rollout-torch", "fig-rollout-onnx", "fig-parity"))
    assert_clean(page, ("job-header", "formats-table", "rollout", "rollout-table", "fig-rollout-torch",
                        "fig-rollout-onnx"))
    for figure in ("fig-rollout-torch", "fig-rollout-onnx"):
        width, height = page.boxes[figure]
        assert 600 < width <= 1150 and 250 < height < 0.6 * width, (figure, width, height)  # wide, not tall
    html = (folder / REPORT_FILE).read_text()
    rows = rollout_rows(html)
    assert len(rows) == 2 and all(row.startswith('<tr class="">') for row in rows)
    assert ">torch<" in rows[0] and "0 px ≤ 0.01 px" in rows[0]
    measured = f"{gap_text(onnx_run['max_state_gap'])} px ≤ 0.01 px"  # the job's own figure, as the page writes it
    assert ">onnx<" in rows[1] and measured in rows[1] and onnx_run["driver"] in rows[1]
    assert f"seed 0, step {onnx_run['worst']['step']}" in rows[1]
    assert "every gap is 0: the artifact&#x27;s run is bit-identical" in html  # the checkpoint's caption
    onnx_figure = html.split('id="fig-rollout-onnx"', 1)[1].split("</figure>", 1)[0]
    assert "bound 0.01 px" in onnx_figure and "1 episode of 40 steps" in onnx_figure
    assert f"max {gap_text(onnx_run['max_state_gap'])} px at step {onnx_run['worst']['step']}" in onnx_figure


def test_a_failed_rollout_is_red_in_the_job_report(browser: Chromium, rollout_sweep: Path) -> None:
    folder = rollout_sweep / "format.precision=fp16,rollout.max_gap.fp16=0.01"
    result = json.loads((folder / "result.json").read_text())
    record = result["rollout"]["formats"]["onnx"]
    assert result["exit_code"] == 4 and result["stage_failed"] == "rollout", result["error"]
    assert record["passed"] is False and record["max_state_gap"] > 0.01 and record["precision"] == "fp16"
    assert record["max_gap_source"] == "rollout.max_gap.fp16"
    page = browser.load(folder / REPORT_FILE, ids=("fig-rollout-onnx",))
    assert_clean(page, ("job-header", "failure", "rollout", "rollout-table", "fig-rollout-onnx"))
    html = (folder / REPORT_FILE).read_text()
    (row,) = rollout_rows(html)
    assert row.startswith('<tr class="failed">') and '<span class="badge failed">failed</span>' in row
    assert f"{gap_text(record['max_state_gap'])} px &gt; 0.01 px" in row and "rollout.max_gap.fp16" in row
    assert 'Rollout: pusht, closed loop against PyTorch <span class="badge failed">failed</span>' in html


def test_the_sweep_report_compares_the_rollouts(browser: Chromium, rollout_sweep: Path) -> None:
    rows, results = rows_and_results(rollout_sweep)
    by_format = {(row["precision"], row["format"]): row for row in rows}
    assert list(by_format) == [("fp32", "torch"), ("fp32", "onnx"), ("fp16", "onnx")]
    fp16 = results["format.precision=fp16,rollout.max_gap.fp16=0.01"]["rollout"]["formats"]["onnx"]
    assert by_format["fp32", "torch"]["rollout"] == "0 px ≤ 0.01"
    assert by_format["fp16", "onnx"]["rollout"] == f"✗ {gap_text(fp16['max_state_gap'])} px > 0.01"
    assert by_format["fp16", "onnx"]["status"] == "parity" and by_format["fp32", "onnx"]["status"] == "ok"
    assert COLUMNS.index("rollout") == COLUMNS.index("runtime_check") + 1

    path = write_sweep_report(rollout_sweep, rows, results)
    page = browser.load(path, ids=("fig-sweep-rollout", "fig-parity"))
    assert_clean(page, ("sweep-header", "summary-table", "fig-parity", "sweep-rollout", "fig-sweep-rollout",
                        "rollout-table"))
    width, height = page.boxes["fig-sweep-rollout"]
    assert height < 0.6 * width, (width, height)
    html = path.read_text()
    assert "<th>rollout gap</th>" in html and f"✗ {gap_text(fp16['max_state_gap'])} px &gt; 0.01" in html
    figure = html.split('id="fig-sweep-rollout"', 1)[1].split("</figure>", 1)[0]
    assert "(0 at every step)" in figure  # the checkpoint: named in the legend, not drawn
    assert figure.count("bound 0.01 px") == 1  # one label per distinct bound
    assert "✗ format.precision=fp16,rollout.max_gap.fp16=0.01 · onnx" in figure
    table = rollout_rows(html)
    assert len(table) == 3 and [row.startswith('<tr class="failed">') for row in table] == [False, False, True]
    assert 'href="format.precision%3Dfp16%2Crollout.max_gap.fp16%3D0.01/report.html"' in table[2]


def test_a_partial_rollout_record_still_renders(browser: Chromium, sweep: Path, tmp_path: Path) -> None:
    """Only trajectories and action gaps (no per-step state gap, bound or counts): drawn, and nothing fails."""
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
    assert_clean(page, ("rollout", "rollout-table", "fig-rollout-onnx", "fig-rollout-openvino-int8", "fig-parity"))
    assert "success PyTorch 3, artifact 2 of 3" in rollout_section(result["rollout"])


def test_the_job_and_sweep_reports_name_the_machine(browser: Chromium, sweep: Path) -> None:
    folder = sweep / "format.atol=1e-05"
    result = json.loads((folder / "result.json").read_text())
    recorded = result["machine"]
    assert recorded == describe_machine()  # the jobs ran in this process, under its ONEDNN_MAX_CPU_ISA
    html = (folder / REPORT_FILE).read_text()
    assert f'<dd id="machine">{cpu_text(recorded["cpu"])}</dd>' in html
    assert f'<dd id="runtimes">{runtimes_line(recorded["runtimes"])}</dd>' in html
    assert f"torch {recorded['runtimes']['torch']}" in html
    page = browser.load(folder / REPORT_FILE)
    assert {"job-header", "machine", "runtimes"} <= set(page.ids) and page.errors == []

    rows, results = rows_and_results(sweep)
    path = write_sweep_report(sweep, rows, results)
    html = path.read_text()
    assert f'<p id="machine"><b>Machine:</b> {cpu_line(recorded["cpu"])}' in html  # both jobs: one line
    assert html.count(cpu_line(recorded["cpu"])) == 1 and 'id="machines"' not in html
    page = browser.load(path)
    assert "machine" in page.ids and "machines" not in page.ids and page.errors == []


def test_a_sweep_on_two_machines_names_each_jobs(browser: Chromium, sweep: Path, tmp_path: Path) -> None:
    rows, results = rows_and_results(sweep)
    vnni = {"avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16"}
    capped = {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": isa_features(vnni, "AVX2"),
              "isa_cap": "AVX2", "flags_seen": isa_features(vnni, None)}
    results["format.atol=0"] = {**results["format.atol=0"], "machine": {"cpu": capped, "runtimes": {}}}
    page_path = tmp_path / REPORT_FILE
    page_path.write_text(sweep_report_html(rows, results))
    html = page_path.read_text()
    table = html.split('<table id="machines">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 3  # the header and one row per job
    assert ("<td class=job>format.atol=0</td><td>AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by "
            "ONEDNN_MAX_CPU_ISA); the CPU has AVX2 AVX-VNNI AVX-512F AVX-512-VNNI AVX-512-BF16</td>") in table
    own = results["format.atol=1e-05"]["machine"]
    assert f"<td class=job>format.atol=1e-05</td><td>{cpu_text(own['cpu'])}</td>" in table
    page = browser.load(page_path)
    assert "machines" in page.ids and "machine" not in page.ids and page.errors == []


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
    code = "import sys, getiaction_export.report.html; print(sorted({'torch', 'hydra'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def save_screenshot(job_dir: Path, png: Path, width: int = 1000, section: str | None = None) -> None:
    """Screenshot of ``job_dir``'s report (written from its result.json), reduced to a small palette PNG.

    ``section``: only that element of the page (docs/rollout.png is ``--section rollout`` of ``policy=act
    rollout=pusht format=all format.formats=[onnx,openvino_int8]``).
    """
    from PIL import Image

    result = json.loads((job_dir / "result.json").read_text())
    page = Path(tempfile.mkdtemp()) / REPORT_FILE
    page.write_text(job_report_html(result))
    binary = chromium_path()
    assert binary, "no Chromium"
    chromium = Chromium(binary)
    try:
        loaded = chromium.load(page, width=width, section=section)
    finally:
        chromium.close()
    image = Image.open(io.BytesIO(loaded.screenshot)).convert("RGB").quantize(colors=64)
    image.save(png, optimize=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Screenshot of a job's report.html (rendered from its result.json).")
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--section", help="an element id (rollout, formats-table, ...): only that part of the page")
    parser.add_argument("--width", type=int, default=1000)
    arguments = parser.parse_args()
    save_screenshot(arguments.job_dir, arguments.png, arguments.width, arguments.section)
