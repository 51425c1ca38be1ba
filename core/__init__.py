"""The shared kernel every app may import: the audit trail, the one error shape, compiled queries, API fields,
parsers and pagination. It imports no app of the project (the composition root is `galfriday_site`)."""
