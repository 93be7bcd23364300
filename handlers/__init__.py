"""Every handler, registered in one table. config.yaml routes texts, clicks and events to these names.

Adding an intent: write one function in the module for its capability, add it here,
and add a route for it in config.yaml.
"""
from __future__ import annotations

from bot.context import Handler
from handlers import gifts, help, marketing, membership, points, pushes

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
    # gifts
    "gifts": gifts.gift_list,
    "gifts_more": gifts.gift_list_more,
    "redeem": gifts.redeem,
    "my_gifts": gifts.my_gifts,
    "cancel_redemption": gifts.cancel_redemption,
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
