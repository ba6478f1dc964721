"""`python -m helpers.demo_data`: generate the synthetic demo exports if missing or stale
(`helpers.demo.exports`)."""

from helpers.demo.exports import main

if __name__ == "__main__":
    raise SystemExit(main())
