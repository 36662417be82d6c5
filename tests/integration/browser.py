"""Headless Chromium (Debian's chromium) driven over the DevTools protocol: open a page, read
what the console said, evaluate script, measure, take screenshots. For the HTML report's tests."""

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request

import websocket

import harness as h

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    def __init__(self):
        self.dir = h.make_temp_dir("chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--mute-audio",
             "--remote-debugging-port=0", "--user-data-dir=" + self.dir, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port()
        pages = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port))
        page = [p for p in pages if p["type"] == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")

    def _port(self):
        path = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited with %s" % self.proc.returncode)
            time.sleep(0.05)
        raise AssertionError("chromium did not open its DevTools port")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise AssertionError("no %s within %ss" % (method, timeout))

    def open(self, url, width=1280, height=900):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 600)
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError("script failed: %s" % res["exceptionDetails"])
        return res["result"].get("value")

    def problems(self):
        """What the page said went wrong: console errors and warnings, uncaught exceptions,
        requests (a self-contained page makes none but its own)."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(("exception", p["exceptionDetails"].get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
                out.append(("console", [a.get("value") for a in p.get("args", [])]))
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(("log", p["entry"]["text"]))
            elif m == "Network.requestWillBeSent" and \
                    not p["request"]["url"].startswith(("file:", "data:", "about:")):
                out.append(("request", p["request"]["url"]))
        return out

    def screenshot(self, path, full=True):
        params = {"format": "png"}
        if full:
            size = self.eval("[document.documentElement.scrollWidth,"
                             " document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 16000),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def screenshot_cli(url, path, width=1280, height=900):
    """chromium --headless --screenshot: the page as a first visit shows it."""
    res = h.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--window-size=%d,%d" % (width, height), "--screenshot=" + path,
                 "--user-data-dir=" + h.make_temp_dir("chromium-shot-"), url], timeout=120)
    assert res.rc == 0 and os.path.getsize(path) > 1000, res


def dump_dom(url):
    """chromium --headless --dump-dom: the DOM after the page's scripts ran."""
    res = h.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                 "--user-data-dir=" + h.make_temp_dir("chromium-dump-"), url], timeout=120)
    assert res.rc == 0, res
    return res.stdout
