"""Templates as WeChat's 2023 rules take them: the monthly bulletin as plain text for customer-service
messages and as keyword fields with a link to its page for templates; a mailed gift's template alert
with the recipient's name, phone and address; `rules check` refusing a template field that could break
the rules, naming file and line. Through the real webhook, the CLI and the WeChat API stand-in."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone

import pytest

from scheduler import jobs
from scheduler.delivery import drain
from rules import DEFAULT_RULES_PATH, Rules
from storage.members import add_staff
from tests.factories import GIFT_RULES, make_entitlement, make_member, make_stock, utc_now, words

DAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 2, 30, tzinfo=timezone.utc)  # 10:30 in Shanghai: outside quiet hours
PUBLIC = "https://members.example.com"
BULLETIN = """# 十二月会员月刊：冬日珍藏

亲爱的会员，**积分礼品节**正在进行，详见[活动页](https://example.com/gift-festival?from=bulletin_12)。

- 钻石卡会员另有 *VIP 赠品名录*可选
- 12 月 20 日起各门店举办年终答谢会

> 以上活动以门店公告为准 <script>alert(1)</script>
"""


@pytest.fixture
def database_url(db_url) -> str:
    return db_url  # SQLite and PostgreSQL


@pytest.fixture
def rules(rules_with, base_rules, tmp_path) -> Rules:
    folder = tmp_path / "bulletins"
    folder.mkdir()
    (folder / "2026-12.md").write_text(BULLETIN, encoding="utf-8")
    bulletin = {**base_rules.jobs.monthly_bulletin.model_dump(mode="json"), "folder": str(folder)}
    return rules_with(jobs={"monthly_bulletin": bulletin}, gifts=GIFT_RULES, pushes={"public_url": PUBLIC})


@pytest.fixture(autouse=True)
def morning(clock):
    clock.now = NOW.timestamp()


def test_the_bulletin_goes_as_plain_text_or_as_keywords_with_a_link_to_its_page(wechat, state, app, fake_wechat):
    with state.db.write() as session:
        make_member(session, name="陈静", tier="C", openid="o-wrote")
        make_member(session, name="赵雅琴", tier="B", openid="o-quiet")
    wechat.text("o-wrote", "积分")  # wrote within 48 hours: a customer-service text may reach her
    _, planned, stats = jobs.run_job(state, "monthly_bulletin", DAY)
    assert (planned, stats.sent) == (2, 2)
    sent = {m["touser"]: m for m in fake_wechat.sent()}

    text = words(sent["o-wrote"])
    assert text == ("十二月会员月刊：冬日珍藏\n\n"
                    "亲爱的会员，积分礼品节正在进行，详见活动页 (https://example.com/gift-festival?from=bulletin_12)。\n\n"
                    "· 钻石卡会员另有 VIP 赠品名录可选\n· 12 月 20 日起各门店举办年终答谢会\n\n"
                    "以上活动以门店公告为准 <script>alert(1)</script>")  # a text: nothing is markup there
    assert not re.search(r"[#*\[\]]", text)

    template = sent["o-quiet"]
    assert template["data"] == {"keyword1": {"value": "十二月会员月刊：冬日珍藏"}, "keyword2": {"value": "2026-12"}}
    assert template["url"] == f"{PUBLIC}/bulletins/2026-12"

    page = app.test_client().get("/bulletins/2026-12")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<h1>十二月会员月刊：冬日珍藏</h1>" in html and "<strong>积分礼品节</strong>" in html
    assert '<a href="https://example.com/gift-festival?from=bulletin_12">活动页</a>' in html
    assert "<li>钻石卡会员另有 <em>VIP 赠品名录</em>可选</li>" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for month in ("2026-11", "2026-13", "..%2F..%2Fconfig", "2026-12.md"):
        missing = app.test_client().get(f"/bulletins/{month}")
        assert missing.status_code == 404 and missing.mimetype == "text/plain"


def test_a_mailed_gift_alert_by_template_carries_name_phone_and_address(wechat, state, fake_wechat):
    with state.db.write() as session:
        add_staff(session, "M9", "王经理", openid="o-manager", now=utc_now())  # never wrote: a template
        member = make_member(session, openid="o-dia", tier="B", manager_id="M9", name="赵雅琴")
        make_entitlement(session, member)
        make_stock(session, "bracelet", 1)
    address = "上海市浦东新区世纪大道 100 号环球金融中心 58 楼 5801 室"  # 35 characters: two fields' worth
    for answer in ("兑换 bracelet", "钱女士", "13900000000", address):
        wechat.text("o-dia", answer)
    code = re.search(r"兑换码：(\w{8})", wechat.text("o-dia", "确认")).group(1)
    drain(state)
    [alert] = [m for m in fake_wechat.sent() if m["touser"] == "o-manager"]
    assert alert["data"] == {
        "keyword1": {"value": "纯银手链"}, "keyword2": {"value": code}, "keyword3": {"value": "钱女士"},
        "keyword4": {"value": "13900000000"},
        "keyword5": {"value": "上海市浦东新区世纪大道 100 号环球金"}, "keyword6": {"value": "融中心 58 楼 5801 室"}}


# --------------------------------------------------------------------------- rules check


def _line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


GOOD = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
GREETING = 'fields: {keyword1: "{name}", keyword2: "{tier_name}", keyword3: "生日快乐，愿新的一岁闪耀如钻"}'


@pytest.mark.parametrize("new,problem", [
    (GREETING.replace("keyword3", "remark"),
     "pushes.messages.birthday_greeting.fields: remark: WeChat's 2023 template rules no longer show the first and "
     "remark lines"),
    (GREETING.replace('keyword1: "{name}"', 'first: "{name}"'), "fields: first: WeChat's 2023 template rules no longer show"),
    (GREETING.replace("生日快乐，愿新的一岁闪耀如钻", "生日快乐，愿新的一岁闪耀如钻，福寿安康万事顺"),
     "pushes.messages.birthday_greeting.fields.keyword3: '生日快乐，愿新的一岁闪耀如钻，福寿安康万事顺' can be 22 characters "
     "(22 of text); a keyword shows at most 20"),
    (GREETING.replace('"{tier_name}"', '"{name} {tier_name}"'),
     "fields.keyword2: '{name} {tier_name}' puts {name}, free text of any length, beside other text"),
    (GREETING.replace("生日快乐，愿新的一岁闪耀如钻", "生日快乐\\n愿新的一岁闪耀如钻"), "holds a line break"),
    (GREETING.replace("生日快乐，愿新的一岁闪耀如钻", "回复“我的投诉 {ticket_no}”查看详情"),
     "can be 27 characters (13 of text + {ticket_no} up to 14)"),
], ids=["remark", "first", "long", "free-text", "line-break", "bounded"])
def test_rules_check_refuses_a_template_field_that_breaks_wechats_rules(app, tmp_path, new, problem):
    bad_file = tmp_path / "config.yaml"
    bad_file.write_text(GOOD.replace(GREETING, new, 1), encoding="utf-8")
    assert bad_file.read_text(encoding="utf-8") != GOOD
    result = app.test_cli_runner().invoke(args=["rules", "check", str(bad_file)])
    assert result.exit_code == 1
    line = _line_of(bad_file.read_text(encoding="utf-8"), new)
    assert result.output.startswith(f"{bad_file}, line {line}: pushes.messages.birthday_greeting.fields")
    assert problem in result.output and "Traceback" not in result.output


def test_rules_check_wants_the_public_url_for_a_link_to_the_bot(app, tmp_path):
    bad_file = tmp_path / "config.yaml"
    bad_file.write_text(re.sub(r"  public_url: .*\n", "", GOOD, count=1), encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["rules", "check", str(bad_file)])
    assert result.exit_code == 1
    assert "pushes: Value error, " not in result.output
    assert "pushes.messages monthly_bulletin link to a path on the bot: set pushes.public_url" in result.output
