"""The CI side of the project: gate, report, comment, promote (see DESIGN §2)."""
