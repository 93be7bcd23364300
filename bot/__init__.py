"""The running bot: the Flask app (webhook, store API, CLI) and the services it shares with the scheduler.

``bot.app.create_app`` builds the app. ``bot.services``, ``bot.settings`` and ``bot.wechat`` are
used by the scheduler too; ``bot.dev`` holds the development aids (console, API stand-in, demo).
"""
