"""Pages 3-6 of the dashboard (models, experiments, reconciliation, system), mounted at `/` beside the others."""
