"""Everything Relay knows about Shopify's inputs."""
