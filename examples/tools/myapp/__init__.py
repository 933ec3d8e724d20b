"""The example application whose tools the formation lists."""
