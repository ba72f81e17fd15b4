"""Test helpers that ship with the package, so the orchestrator's tests can use them too:
`fake_providers`, local fake OpenAI-compatible and Anthropic HTTP servers."""
