"""The README's screenshot of `musicgen app`: starts the app, makes music from a prompt
in headless Chromium as a user would, and saves the page as a PNG.

    .venv/bin/python scripts/app_screenshot.py docs/app.png [--checkpoint DIR]

Needs what `bash scripts/setup.sh dev` installs (Chromium, its driver, Selenium).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.musicgen.app_driver import Page, chromium, serve

PROMPT = "A cheerful celtic folk tune with fiddle and flute at 112 bpm in D major."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--checkpoint", default="models/reference", help="pipeline folder")
    parser.add_argument("--seconds", default="8", help="seconds to generate (default 8)")
    parser.add_argument("--variations", default="2", help="variations (default 2)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="app_screenshot."))
    with serve(args.checkpoint, work / "out") as (url, _), chromium(work, (1400, 1900)) as d:
        page = Page(d, url, work).open()
        page.field("prompt").send_keys(PROMPT)
        page.field("chords").click()
        page.wait(lambda: page.value("bpm") == "112")
        page.type("duration", args.seconds)
        page.type("variations", args.variations)
        print(page.press("generate", r"made \d", timeout=600))
        page.pick("a", "#1 ")
        page.wait(lambda: "#1 prompt" in page.text("compare-a"))
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(args.out)
    from PIL import Image  # Pillow comes with matplotlib

    Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)  # a third
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
