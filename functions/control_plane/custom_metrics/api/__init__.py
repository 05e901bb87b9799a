"""The HTTP API: one powertools resolver served by API Gateway and by the local server."""
