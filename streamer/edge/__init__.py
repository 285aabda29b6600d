"""The aiohttp edge: HTTP routes, WebSocket upgrades, auth and CORS above the session domain."""
