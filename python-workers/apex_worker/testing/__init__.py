"""Test helpers that ship with the package, so the orchestrator's tests can use them too:
`fake_providers`, local fake OpenAI-compatible and Anthropic HTTP servers, and
`providers_file`, the providers files that point workers at them."""
