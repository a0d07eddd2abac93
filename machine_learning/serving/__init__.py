"""Using a trained model: ``predict`` (battles to probabilities, the model behind a URI),
``serve`` (the HTTP service following the champion alias) with its ``routes`` and page, and
``batch`` (a CSV of battles scored in chunks)."""
