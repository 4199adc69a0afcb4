"""Microsoft Teams team channels: Graph reads and posts, normalisation, polling and names."""
