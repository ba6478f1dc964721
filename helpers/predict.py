"""`python -m helpers.predict`: images + prompts -> binary masks
(`helpers.inference.mask_files`)."""

from helpers.inference.mask_files import main

if __name__ == "__main__":
    raise SystemExit(main())
