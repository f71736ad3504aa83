"""The site (time-series) workflow: config checks, the configured model, context, stages, stage list."""
