"""Every handler, registered in one table. config.yaml routes texts, clicks and events to these names.

Adding an intent: write one function in the module for its capability, add it here,
and add a route for it in config.yaml.
"""
from __future__ import annotations

from bot.context import Handler
from handlers import events, help, marketing, membership, points, pushes

HANDLERS: dict[str, Handler] = {
    # membership
    "welcome": membership.welcome,
    "unfollow": membership.unfollow,
    "bind": membership.bind,
    "unbind": membership.unbind,
    # points
    "points": points.points,
    "history": points.history,
    "benefits": points.benefits,
    # events
    "events": events.list_events,
    "join": events.join,
    "my_events": events.my_events,
    "leave": events.leave,
    # marketing pushes
    "unsubscribe": marketing.unsubscribe,
    "subscribe": marketing.subscribe,
    "push_finished": pushes.push_finished,
    # help and fallbacks
    "help": help.show_help,
    "unknown_text": help.unknown_text,
    "media_received": help.media_received,
    "cancel": help.cancel,
}
