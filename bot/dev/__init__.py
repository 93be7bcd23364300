"""Development aids, apart from the running bot: the WeChat wire format (console, benchmarks,
tests), the interactive console, the WeChat HTTP API stand-in, and the demo data."""
