"""The CI side of the project: gate, report, comment, promote."""
