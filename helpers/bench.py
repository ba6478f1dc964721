"""`python -m helpers.bench`: the course's paths against the model alone, side by side
(`helpers.course.benchmarks`)."""

from helpers.course.benchmarks import main

if __name__ == "__main__":
    raise SystemExit(main())
