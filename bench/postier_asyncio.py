"""``python -m bench.postier_asyncio --config FILE``: ``postier serve`` on the stdlib asyncio loop.

``postier serve`` picks uvloop when it is installed; this runs the same composition root
(``postier.app.serve``) on the stdlib loop, so ``--postier-loop asyncio`` can measure what uvloop
brings, or stand in while the uvloop path is broken.
"""

from __future__ import annotations

import argparse
import asyncio

from postier.app import serve
from postier.config import load_config
from postier.observe import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    config = load_config(parser.parse_args().config)
    setup_logging(config.log.level, config.log.format)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
