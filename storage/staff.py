"""Staff in WeChat: one-time invite codes (`staff invite`) and binding a staff member's WeChat with them."""
from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rules import BotError
from storage.codes import new_code, normalise_code
from storage.models import Member, Staff, StaffInvite

INVITE_VALID = timedelta(hours=24)


def create_invite(session: Session, staff_id: str, now: datetime) -> StaffInvite:
    """A one-time code for ``staff_id``, valid 24 hours."""
    if session.get(Staff, staff_id) is None:
        raise BotError(f"no staff member {staff_id!r}: flask --app wsgi staff add {staff_id} NAME --role …")
    invite = StaffInvite(code=new_code(8), staff_id=staff_id,
                         created_at=now, expires_at=now + INVITE_VALID)
    session.add(invite)
    session.flush()
    return invite


class StaffBind(enum.Enum):
    BOUND = "staff_bound"
    REFUSED = "staff_bind_refused"  # unknown, expired or used code: one answer for all
    MEMBER = "staff_bind_member"  # this WeChat is a member's
    ALREADY = "staff_already_bound"  # this WeChat is a staff member's already


def bind_staff(session: Session, code: str, openid: str, now: datetime) -> tuple[StaffBind, Staff | None]:
    """Link ``openid`` to the staff member the code was made for; the code works once, within 24 hours."""
    current = session.scalar(select(Staff).where(Staff.openid == openid))
    if current is not None:
        return StaffBind.ALREADY, current
    if session.scalar(select(Member.id).where(Member.openid == openid)) is not None:
        return StaffBind.MEMBER, None
    used = session.execute(
        update(StaffInvite).where(StaffInvite.code == normalise_code(code), StaffInvite.used_at.is_(None),
                                  StaffInvite.expires_at > now)
        .values(used_at=now, used_by=openid).execution_options(synchronize_session=False)
    ).rowcount
    if not used:
        return StaffBind.REFUSED, None
    invite = session.get(StaffInvite, normalise_code(code))
    staff = session.get(Staff, invite.staff_id)
    staff.openid = openid
    session.flush()
    return StaffBind.BOUND, staff
