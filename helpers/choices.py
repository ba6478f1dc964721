"""`python -m helpers.choices`: the demo's training choices, one setting at a time, scored on
validation (`helpers.course.choices`)."""

from helpers.course.choices import main

if __name__ == "__main__":
    raise SystemExit(main())
