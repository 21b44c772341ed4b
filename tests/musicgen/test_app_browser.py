"""`musicgen app` as a user meets it: started from the command line on a free port and
driven in Debian's headless Chromium (`scripts/setup.sh dev` installs it and its driver).

One test, one server and one browser, in the order a user works: a prompt whose controls
the page reads, two variations (while a second tab's request waits in the queue) with the
measured-controls panel and a WAV download, a clip uploaded and one recorded, each
continued, a result picked from the history and continued, every bad input answered in
the page, and each tab with its own history."""

import re

import numpy as np
import pytest
import soundfile as sf

from tests.musicgen.app_driver import CHROMEDRIVER, CHROMIUM, Page, chromium, serve

PROMPT = "Upbeat rock song with electric guitar and drums, 126 BPM, E minor."
SECONDS = 1.5


@pytest.fixture
def app_pipeline(tiny_controls_pipeline, tiny_pipeline, tmp_path):
    """A random pipeline whose LM reads controls, with a refiner, up to 4 s: saved."""
    from musicgen.pipeline import MusicGen

    mg = MusicGen(tiny_controls_pipeline.lm, tiny_pipeline.codec, tiny_pipeline.refiner,
                  max_duration=4.0, sampling=tiny_pipeline.sampling, refine_steps=2)  # fmt: skip
    return mg.save_pretrained(tmp_path / "pipeline")


def _clips(folder):
    t = np.arange(44100) / 44100
    sf.write(folder / "clip.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    sf.write(folder / "long.flac", np.zeros(30 * 60 * 4000, np.int16), 4000)  # 30 minutes
    (folder / "noise.wav").write_bytes(b"RIFF, but not audio" * 20)


def _wav_seconds(path) -> float:
    info = sf.info(path)
    assert info.format == "WAV" and info.samplerate == 44100, info
    return info.frames / info.samplerate


def test_the_app_in_chromium(app_pipeline, tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium and its driver are missing: run 'bash scripts/setup.sh dev'")
    _clips(tmp_path)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with serve(app_pipeline, tmp_path / "out") as (url, log), chromium(downloads) as driver:
        page = Page(driver, url, downloads).open()
        first = driver.current_window_handle

        # The controls the prompt states fill the fields when the prompt is left.
        page.field("prompt").send_keys(PROMPT)
        page.field("chords").click()
        page.wait(lambda: page.value("bpm") == "126")
        assert page.value("key") == "E minor"
        assert {"electric guitar", "drums"} <= set(page.text("instruments").split("\n"))
        page.type("bpm", "100")  # edited: asked of both variations instead of 126
        page.type("duration", str(SECONDS))
        page.type("variations", "2")

        # A second tab: while the first generates (compiling for seconds), its request
        # waits in the queue, which it shows, and its light events are answered.
        driver.switch_to.new_window("tab")
        other = Page(driver, url, downloads).open()
        second = driver.current_window_handle
        other.field("prompt").send_keys("A calm folk tune with flute at 90 bpm.")
        other.type("duration", str(SECONDS))
        other.type("variations", "2")  # the first tab's shapes: its programs serve both
        driver.switch_to.window(first)
        page.click("generate")
        page.wait(lambda: "generating 2 clips" in page.status())  # the server has it
        driver.switch_to.window(second)
        other.click("generate")
        other.wait(lambda: "queue: 1/1" in other.busy())
        other.field("chords").click()  # leaves the prompt: its controls are read at once
        other.wait(lambda: other.value("bpm") == "90")
        assert "queue: 1/1" in other.busy()  # still behind the first tab's request
        other.wait(lambda: "made 2 clips: #3 prompt" in other.status(), 240)
        driver.switch_to.window(first)

        # The results: asked against measured, players, spectrograms, a WAV download.
        page.wait(lambda: "made 2 clips: #1 prompt" in page.status())
        assert re.search(r"made 2 clips: #1 prompt \(\d/4 as asked\), #2", page.status())
        for slot in (0, 1):
            assert "asked: 100 bpm, E minor, electric guitar + drums" in page.text(
                f"result-{slot}-title"
            )
            checks = page.text(f"result-{slot}-checks")
            assert re.search(r"tempo 100 bpm \d+\.\d bpm( \(\w+\))? [✓✗]", checks), checks
            assert re.search(r"key E minor [A-G]#? (major|minor)", checks), checks
            assert page.find(f"#result-{slot}-audio audio") is not None
            href = page.find(f"#result-{slot}-audio a[download]").get_attribute("href")
            assert href.endswith(".wav") and page.find(f"#result-{slot}-spectrogram img")
        assert page.find("#result-2") is None  # two results, no empty slots shown
        assert _wav_seconds(page.download(0)) == SECONDS

        # An uploaded clip, continued: its last second kept, 1.5 s new.
        page.upload(tmp_path / "clip.wav")
        page.type("keep", "1")
        page.type("variations", "1")
        page.press("continue", r"made 1 clip: #5 continuation of clip\.wav")
        assert _wav_seconds(page.download(0)) == 1.0 + SECONDS

        # A clip recorded from the microphone (Chromium's test tone), continued.
        page.record(1.5)
        page.press("continue", r"made 1 clip: #6 continuation of audio\.wav")

        # The history: replayed, compared, continued.
        history = page.text("history")
        assert history.count(PROMPT) == 4 and "continuation of clip.wav" in history, history
        page.pick("a", "#1 ")
        page.pick("b", "#5 ")
        page.wait(lambda: "#5 continuation" in page.text("compare-b"))
        assert "#1 prompt" in page.text("compare-a")
        page.click("continue-a")
        page.wait(lambda: "#1 prompt is the clip" in page.status())
        page.press("continue", r"made 1 clip: #7 continuation of 001_upbeat_rock")

        # Bad input: a message in the page, and the app goes on serving.
        for field, text, button, message in [
            ("duration", "99", "generate", r"⚠ duration must be .*\(0, 4\] seconds.*got 99"),
            ("bpm", "500", "generate", r"⚠ bpm must lie in 30-300, got 500"),
            ("prompt", "", "generate", r"⚠ write a prompt"),
        ]:
            page.type(field, text)
            page.press(button, message)
        page.type("bpm", "")
        page.type("duration", str(SECONDS))
        page.upload(tmp_path / "noise.wav")
        page.press("continue", r"⚠ noise\.wav: not a readable audio file")
        page.upload(tmp_path / "long.flac")
        page.press("continue", r"⚠ the clip is 30\.0 minutes long; the app takes clips up to 10")

        # Each tab keeps its own history; the page showed the stages as they went.
        assert "A calm folk" not in page.text("history")
        driver.switch_to.window(second)
        history = other.text("history")
        assert "A calm folk tune" in history and PROMPT not in history, history
        seen = " ".join(page.progress_seen)
        assert "the LM writes tokens" in seen or "measuring" in seen, seen
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
