"""Rate limits, admission, circuit breaking, API keys and grants: pure policy with an injected clock, no
aiohttp and no I/O (the stores they consult live in :mod:`streamer.state`). Import the modules themselves."""
