"""What crosses a process boundary, defined once for both halves (``machine_learning`` and ``ci``).

- the files one step writes and another reads: ``records`` (the validating loader),
  ``run_record`` (run.json), ``gate_record`` (gate.json), ``build_info`` (build.json),
  ``state_manifest`` (a state snapshot's manifest.json), ``provenance`` (the GitHub event
  payload and where a run comes from);
- the MLflow vocabulary: ``mlflow_names`` (tags, run parameters, aliases, the registered model,
  the threshold tag prefixes) and ``metric_names``;
- the command lines' shared argument types (``arguments``) and the failure hierarchy with its
  exit codes (``failures``);
- the predictor's request and response (``prediction``, pydantic: imported only by what serves
  or asks the predictor).

This package imports nothing from either half, so both can import it without a cycle. Every
module but ``prediction`` is standard library only: the privileged PR-comment job imports
``records`` and ``build_info`` with a bare interpreter.
"""
