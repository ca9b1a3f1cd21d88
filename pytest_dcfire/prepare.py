"""`python -m pytest_dcfire.prepare`: the helper image, before pytest, for CI caches.

A session builds the helper image on first use; a CI job that caches images wants to know
its tag (the cache key) and to build it in its own step, so that the build is neither timed
with the suite nor repeated by every job:

    python -m pytest_dcfire.prepare --tag      # print the tag (no engine needed)
    python -m pytest_dcfire.prepare --build    # build it unless present, then print the tag
"""

from __future__ import annotations

import argparse
import sys

from pytest_dcfire.errors import DcfireError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_dcfire.prepare",
        description="print (--tag) or build (--build) the pytest-dcfire helper image",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tag", action="store_true", help="print the helper image's tag")
    what.add_argument(
        "--build", action="store_true", help="build the helper image on DOCKER_HOST's engine"
    )
    args = parser.parse_args(argv)
    from pytest_dcfire.faults.helper import ensure_helper_image, helper_image_tag

    if args.tag:
        print(helper_image_tag())
        return 0
    from pytest_dcfire.runtime.engine import Engine, SessionIdentity

    try:
        engine = Engine.connect(SessionIdentity.new(worker="prepare"))
        try:
            tag = ensure_helper_image(engine, lambda line: print(line, file=sys.stderr))
        finally:
            engine.close()
    except DcfireError as exc:
        print(f"pytest_dcfire.prepare: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
