"""A non-editable install works outside the checkout: the wheel carries the demo page, and `voice-agent serve`
from a fresh virtualenv, started in an unrelated directory, serves it."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile

import httpx
import pytest

from bench.provider_sim import ProviderSim
from bench.server_process import ROOT, free_port, on_simulator
from tests.servers import wait_until

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        cwd=out,
    )
    return next(out.glob("voice_agent-*.whl"))


def test_the_wheel_carries_the_page(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"agent/web/index.html", "agent/web/app.js", "agent/web/style.css"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "bench/")) or "__pycache__" in n]


async def test_an_installed_server_serves_the_page_from_anywhere(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder().create(env_dir)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]  # the running pip, for the new env (it has none)
    subprocess.run([*pip, "install", "--quiet", "--no-deps", "--ignore-installed", str(wheel)], check=True)
    # The dependencies come from the interpreter running the tests (a virtualenv or the system's), as plain paths
    # after the new env's own: their .pth files (the checkout's editable install among them) are not run.
    own_site = next(env_dir.glob("lib/python*/site-packages"))
    (own_site / "test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the checkout
    where = subprocess.run(
        [python, "-c", "import agent; print(agent.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(env_dir)), where  # the installed copy, not the checkout
    sim = ProviderSim().start()
    port = free_port()
    settings = on_simulator(sim, {"WORKERS": "0"})
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [env_dir / "bin" / "voice-agent", "serve", "--port", str(port)],
        cwd=elsewhere,
        env={**env, **settings},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def up() -> bool:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(up, 180)
            page = await http.get("/")
            assert page.status_code == 200 and "<script" in page.text
            assert (await http.get("/static/app.js")).status_code == 200
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        sim.stop()
