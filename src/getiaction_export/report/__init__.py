"""The report room: result.json (rendered once from the job state), the sweep summary (summary.md/json) and
report.html with its figures."""
