"""What crosses a process boundary, defined once for both halves (``machine_learning`` and ``ci``).

Its first room is ``prediction``: the prediction API's request and response. This package
imports nothing from either half, so both can import it without a cycle.
"""
