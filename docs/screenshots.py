"""The README's screenshots of ``mlflow ui``: the experiment's Models tab comparing the cells'
models, and its runs table with the ablation's summary run expanded over its cells.

    .venv/bin/python docs/screenshots.py              # the repo's mlflow.db -> docs/img/*.png

It starts ``mlflow server`` on the store (127.0.0.1 only) and Debian's
``chromium-headless-shell`` with its DevTools socket, drives the page over the DevTools
protocol (a click on the summary run's expander, which no URL can ask for), saves each PNG,
and stops both by pid.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import matplotlib.image as mpimg
import mlflow
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "nanomoe-ablation"
PANEL = 590  # pixels: the assistant panel on the right of a 2300-pixel window, cropped off
LEFT = 1400  # pixels: the Models tab's columns from the model's name to its source run
# where a column's header lies, in pixels: [left, right]
COLUMN = """(() => {
  const cell = [...document.querySelectorAll('[role="columnheader"]')]
    .find(c => c.textContent.trim() === '%s');
  if (!cell) return null;
  const r = cell.getBoundingClientRect();
  return [Math.round(r.left), Math.round(r.right)];
})()"""
EXPAND = """(() => {
  const link = document.querySelector('a[href$="/runs/%s"]');
  const row = link && link.closest('[role="row"]');
  const button = row && row.querySelector('button');
  if (button) button.click();
  return Boolean(button);
})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float = 120) -> bytes:
    """The body of ``url`` once it answers."""
    end = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


class DevTools:
    """A minimal WebSocket client (RFC 6455, text frames) speaking the DevTools protocol."""

    def __init__(self, ws_url: str) -> None:
        host, _, path = ws_url.removeprefix("ws://").partition("/")
        name, port = host.split(":")
        self.sock = socket.create_connection((name, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("DevTools closed the socket")
            out += chunk
        return out

    def _frame(self) -> bytes:
        data, fin = b"", False
        while not fin:
            b0, b1 = self._read(2)
            fin, n = bool(b0 & 0x80), b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            data += self._read(n)
        return data

    def call(self, method: str, **params) -> dict:
        """Send one command; its result (events in between are dropped)."""
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(b"\x81" + size + mask + masked)
        while True:
            message = json.loads(self._frame())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]


def shoot(
    tools: DevTools, url: str, out: Path, script: str | None = None, keep: tuple = ()
) -> None:
    """Open ``url``, let it render, run ``script``, save a PNG of the page without MLflow's
    assistant panel; with ``keep`` (column headers), only the columns up to the first of
    them, then those columns, each cut marked by a grey line: the metric columns of a
    model lie far to the right of its name."""
    tools.call("Page.navigate", url=url)
    time.sleep(10)
    if script:
        clicked = tools.call("Runtime.evaluate", expression=script)["result"]["value"]
        assert clicked, f"nothing to click on {url}"
        time.sleep(4)
    spans = []
    for name in keep:
        span = tools.call("Runtime.evaluate", expression=COLUMN % name, returnByValue=True)
        assert span["result"].get("value"), f"no column {name} on {url}"
        spans.append(span["result"]["value"])
    png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        Path(tmp.name).write_bytes(png)
        image = mpimg.imread(tmp.name)
    if spans:
        cut = np.full((image.shape[0], 4, image.shape[2]), 0.6, dtype=image.dtype)
        pieces = [image[:, :LEFT]]
        for left, right in spans:
            pieces += [cut, image[:, left:right]]
        image = np.concatenate(pieces, axis=1)
    else:
        image = image[:, : image.shape[1] - PANEL]
    mpimg.imsave(out, image)
    print(f"{out}: {image.shape[1]}x{image.shape[0]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python docs/screenshots.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("--store", default=str(ROOT / "mlflow.db"), help="the MLflow SQLite file")
    p.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    a = p.parse_args(argv)
    if not Path(a.store).is_file():
        print(f"error: {a.store}: not found; run dvc repro first, or pass --store", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    port, debug = free_port(), free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{Path(a.store).resolve()}", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    browser = subprocess.Popen(
        ["chromium-headless-shell", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=2300,760", f"--remote-debugging-port={debug}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health")
        client = mlflow.MlflowClient(url)
        exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
        summaries = client.search_runs([exp], "tags.kind = 'ablation'", order_by=["start_time"])
        pages = json.loads(wait_http(f"http://127.0.0.1:{debug}/json/list"))
        tools = DevTools(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
        view = "?workflowType=machine_learning"
        models = f"{url}/#/experiments/{exp}/models{view}"
        tools.call("Emulation.setDeviceMetricsOverride", width=9000, height=900,
                   deviceScaleFactor=1, mobile=False)  # fmt: skip
        shoot(tools, models, out / "mlflow-models.png", keep=("final_val_bpb", "final_val_loss"))
        tools.call("Emulation.clearDeviceMetricsOverride")
        parent = summaries[0].info.run_id  # the first report's: the cells' parent
        runs = f"{url}/#/experiments/{exp}/runs{view}"
        shoot(tools, runs, out / "mlflow-parent-run.png", EXPAND % parent)
    finally:
        for proc in (browser, server):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
