"""The Evals API: evals, their runs (graded samples of a served model, or of given rows), output items."""
