"""Everything that shows a run: plain lines, the live view, JSON logs, traces,
notifications, the report and inert Markdown."""
