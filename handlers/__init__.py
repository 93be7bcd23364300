"""Every handler, registered in one table. config.yaml routes texts, clicks and events to these names.

Adding an intent: write one function in the module for its capability, add it here,
and add a route for it in config.yaml.
"""
from __future__ import annotations

from bot.context import Handler
from handlers import complaints, events, gifts, help, marketing, membership, points, pushes, staff

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
    # events
    "events": events.list_events,
    "join": events.join,
    "my_events": events.my_events,
    "leave": events.leave,
    # marketing pushes
    "unsubscribe": marketing.unsubscribe,
    "subscribe": marketing.subscribe,
    "push_finished": pushes.push_finished,
    # complaints: members
    "complaint": complaints.complaint,
    "complaint_media": complaints.complaint_media,
    "complaint_fallback": complaints.complaint_fallback,
    "my_complaints": complaints.my_complaints,
    "complaint_add": complaints.complaint_add,
    "rate": complaints.rate,
    "human": complaints.human,
    # complaints: staff in WeChat
    "staff_bind": staff.staff_bind,
    "staff_tickets": staff.staff_tickets,
    "staff_reply": staff.staff_reply,
    "staff_wait": staff.staff_wait,
    "staff_transfer": staff.staff_transfer,
    "staff_resolve": staff.staff_resolve,
    "staff_clients": staff.staff_clients,
    "staff_callbacks": staff.staff_callbacks,
    "staff_callback_done": staff.staff_callback_done,
    # help and fallbacks
    "help": help.show_help,
    "unknown_text": help.unknown_text,
    "media_received": help.media_received,
    "cancel": help.cancel,
}
