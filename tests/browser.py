"""Debian's Chromium, headless, for tests of what a browser does with our pages: on a closed network
(every host but loopback unresolvable), either dumping a page's DOM once its scripts ran, or driven
click by click over the DevTools protocol (websockets, which uvicorn[standard] brings)."""

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.processes import free_port, stop

CLOSED_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", CLOSED_NETWORK]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(browser: str, url: str, profile: Path) -> tuple[str, str]:
    """The page's DOM after its scripts ran, and what it wrote to the console (CSP refusals included)."""
    done = subprocess.run(
        [
            browser,
            *HEADLESS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, "\n".join(line for line in done.stderr.splitlines() if ":CONSOLE" in line)


class Page:
    def __init__(self, connection) -> None:
        self.connection, self.next_id = connection, 0

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.connection.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.connection.recv())
            if message.get("id") == self.next_id:
                return message

    async def js(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return answer["result"].get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"the page never had: {expression}")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def type_into(self, selector: str, text: str) -> None:
        """As a user types (React reads the input event, not the value)."""
        await self.js(
            f"(() => {{ const field = document.querySelector({json.dumps(selector)});"
            " Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(field,"
            f" {json.dumps(text)}); field.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        )


@asynccontextmanager
async def devtools_page(browser: str, profile: Path) -> AsyncIterator[Page]:
    port = free_port()
    process = subprocess.Popen(
        [browser, *HEADLESS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        page = next(target for target in targets if target["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as connection:
            yield Page(connection)
    finally:
        stop(process)
