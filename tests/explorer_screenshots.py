"""README's explorer screenshots, taken the way the browser test drives the page (Debian chromium, headless):

    python tests/explorer_screenshots.py --run runs/00000-celeba-nest-64 --out docs/samples   # from the repository root

writes explorer.png (the generator tab with the shipped model) and explorer-run.png (the run tab of --run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_explore_browser import (SHIPPED, chromium, explorer, image_src, new_image, open_tab,  # noqa: E402
                                  type_into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory for the run tab")
    parser.add_argument("--out", required=True, help="folder of the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shipped = os.path.relpath(SHIPPED)  # as a user in the repository root types it
        with explorer("--ckpt", shipped, "--run", args.run, "--device", "cpu", log=Path(tmp) / "server.log") as url, \
                chromium(Path(tmp) / "profile", size="1280,1200") as driver:
            driver.get(url)
            new_image(driver, "grid", None)
            old = image_src(driver, "grid")
            type_into(driver, "seeds", "0-23")
            new_image(driver, "grid", old)
            driver.save_screenshot(str(out / "explorer.png"))
            driver.set_window_size(1280, 1560)  # the curves below the grid
            open_tab(driver, "Run")
            new_image(driver, "run-grid", None)
            time.sleep(3)  # the curves draw after the grid
            driver.save_screenshot(str(out / "explorer-run.png"))
    print(f"wrote {out / 'explorer.png'} and {out / 'explorer-run.png'}")


if __name__ == "__main__":
    main()
