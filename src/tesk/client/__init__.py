"""The `tesk task ...` and `tesk run` commands: a TES client over HTTP (`commands`, `http`)."""
