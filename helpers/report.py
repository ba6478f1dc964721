"""`python -m helpers.report`: metrics -> report.md + HTML (`helpers.course.course_report`)."""

from helpers.course.course_report import main

if __name__ == "__main__":
    raise SystemExit(main())
