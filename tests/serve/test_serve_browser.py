"""The web page in a real headless browser (Debian ``chromium`` driven by Playwright).

Optional: marked ``browser`` and skipped when chromium or playwright is missing. Run with
``pytest -m browser tests/serve`` after ``apt-get install chromium`` and ``pip install playwright``.
"""

from __future__ import annotations

import shutil

import pytest
import soundfile as sf
from serve_testlib import API_KEY, live_server, tone_wav

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page_url(serve_model, tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from valle2.serve import ServeConfig, create_app

    cfg = ServeConfig(data_dir=tmp_path_factory.mktemp("browser"), api_keys=(API_KEY,), max_wait_ms=5.0)
    with live_server(create_app(cfg, model=serve_model)) as url:
        yield url


@pytest.fixture(scope="module")
def page(page_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"])
        context = browser.new_context(accept_downloads=True)
        context.grant_permissions(["microphone"], origin=page_url)
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(page_url)
        pg.fill("#apikey", API_KEY)
        pg.dispatch_event("#apikey", "change")
        pg.wait_for_function("document.querySelectorAll('#voice option').length > 0")
        yield pg
        browser.close()


def test_speak_play_and_download(page, tmp_path):
    assert page.eval_on_selector("#voice", "s => s.value") == "demo"
    page.select_option("#format", "wav")
    page.fill("#text", "Hello from the browser. Second sentence.")
    page.click("#speak")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')")
    assert page.eval_on_selector("#player", "a => a.src").startswith("blob:")
    duration = page.evaluate("""() => new Promise(ok => { const a = document.querySelector('#player');
        if (a.readyState >= 1) ok(a.duration); else a.addEventListener('loadedmetadata', () => ok(a.duration)); })""")
    assert duration > 0
    with page.expect_download() as info:
        page.click("#download")
    path = tmp_path / "out.wav"
    info.value.save_as(path)
    assert info.value.suggested_filename == "valle2.wav"
    assert sf.info(str(path)).samplerate == 24000


def test_enroll_by_upload_and_by_recording(page, tmp_path):
    upload = tmp_path / "me.wav"
    upload.write_bytes(tone_wav())
    page.fill("#enroll-name", "uploaded")
    page.fill("#enroll-transcript", "Hello, this is my voice.")
    page.set_input_files("#enroll-file", str(upload))
    page.click("#enroll")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Enrolled')")
    assert page.eval_on_selector("#voice", "s => s.options[s.selectedIndex].text") == "uploaded"

    # Chromium's fake microphone plays a beep; the page records it, converts it to WAV, uploads it.
    page.set_input_files("#enroll-file", [])
    page.click("#record")
    page.wait_for_timeout(2000)
    page.click("#record")
    page.wait_for_function("document.querySelector('#record-info').textContent.startsWith('recorded')")
    page.fill("#enroll-name", "recorded")
    page.click("#enroll")
    page.wait_for_function("/Enrolled|failed/.test(document.querySelector('#status').textContent)")
    assert page.text_content("#status").startswith("Enrolled"), page.text_content("#status")
    names = page.eval_on_selector_all("#voice option", "os => os.map(o => o.text)")
    assert names == ["demo (built in)", "uploaded", "recorded"]
    page.fill("#text", "Now in the recorded voice.")
    page.click("#speak")
    page.wait_for_function("/Done|failed/.test(document.querySelector('#status').textContent)")
    assert page.text_content("#status").startswith("Done"), page.text_content("#status")
