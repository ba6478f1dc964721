"""`python -m helpers.prepare`: Roboflow exports -> masks, manifest and split.

The code is `helpers.data.preparation`; `--demo` uses the generated exports of `helpers.demo`.
"""

from helpers.data.preparation import main
from helpers.demo.exports import ensure_demo_data

if __name__ == "__main__":
    raise SystemExit(main(demo_exports=ensure_demo_data))
