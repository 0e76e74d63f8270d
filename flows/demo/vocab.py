"""Text pools of the demo: names, e-mail domains, touchpoint names and free-text comments.

Why this exists: realistic-looking strings (English and Chinese names, comments keyed by
touchpoint and mood) are data, not logic; keeping them apart keeps the simulation modules
short, and the utility profile reuses the name and e-mail pools.
"""

from __future__ import annotations

# Names: built from parts (no faker). Chinese names carry pinyin for their e-mail.
EN_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Sandra Mark Ashley Paul Emily Steven Kimberly Andrew Donna Joshua Michelle "
    "Kevin Laura Brian Amanda Aisha Omar Sofia Lars Ana Mateo Priya Ravi Yuki Kenji"
).split()
EN_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris "
    "Clark Lewis Robinson Walker Young Allen King Wright Scott Green Baker Adams Nelson "
    "Hill Campbell Mitchell Carter O'Brien O'Neil Haddad Silva Berg Novak Kowalski Patel "
    "Singh Nakamura Müller"
).split()
CN_SURNAME = [
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("赵", "zhao"), ("黄", "huang"), ("周", "zhou"), ("吴", "wu"),
    ("徐", "xu"), ("孙", "sun"), ("胡", "hu"), ("朱", "zhu"), ("高", "gao"),
    ("林", "lin"), ("何", "he"), ("郭", "guo"), ("马", "ma"), ("罗", "luo"),
]
CN_GIVEN = [
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"),
    ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"),
    ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"),
    ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("霞", "xia"), ("平", "ping"),
    ("刚", "gang"), ("桂英", "guiying"), ("建华", "jianhua"), ("志强", "zhiqiang"),
    ("晓燕", "xiaoyan"), ("海燕", "haiyan"), ("子涵", "zihan"), ("雨桐", "yutong"),
]
P_CHINESE_NAME = 0.15
# RFC 2606 reserved domains: addresses look real but can never reach a real person.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com",
                 "inbox.example.net", "post.example.org")
EMAIL_SEPS = (".", "_", "")

TP_NAME_ZH = {
    "apply_online": "网上申请", "approval": "审批", "installation": "上门安装",
    "onboarding_call": "欢迎电话", "app_usage": "手机应用", "billing": "账单",
    "support_call": "客服电话", "store_visit": "门店服务", "field_repair": "上门维修",
    "renewal": "续约",
}
COMMENTS = {
    ("en", "pos"): [
        "Great service, thank you!",
        "Quick and easy, exactly what I needed.",
        "The {tp} was smooth - no complaints.",
        "Staff were friendly, helpful and fast.",
        'Really happy with the "new" experience, well done.',
    ],
    ("en", "mid"): [
        "It was okay, nothing special.",
        "Fine I guess, but it took a while.",
        "Average experience with the {tp}; could be better.",
        "Not bad, not great.",
        "Got there in the end, after two tries.",
    ],
    ("en", "neg"): [
        "Terrible, I waited for ages and nobody called back.",
        'My bill was wrong again, and support said "it\'s the system".',
        "The {tp} was a mess, I'm thinking of leaving.",
        "Too expensive for what you get.",
        "Nobody could fix it, very disappointed.",
    ],
    ("zh", "pos"): ["服务很好，谢谢！", "办理很顺利，非常满意。", "{tp}体验很好，工作人员很专业。"],
    ("zh", "mid"): ["还行吧，一般般。", "还可以，就是等的时间有点长。", "{tp}马马虎虎，有待改进。"],
    ("zh", "neg"): [
        "太差了，等了很久也没人回电话。",
        "账单又错了，客服说“系统问题”，很失望。",
        "{tp}一团糟, 我在考虑换一家。",
        "价格太贵了，不值。",
    ],
}
