"""`python -m helpers.run_notebooks`: execute the course's notebooks (`helpers.course.runner`)."""

from helpers.course.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
