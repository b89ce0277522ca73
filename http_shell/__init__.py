"""HTTP plumbing shared by the command and query APIs: dependencies, problems, OpenAPI, metrics."""
