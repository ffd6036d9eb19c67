"""The demo brand's content: a Taipei café chain with eight stores, its staff and its menu.

Plain data, no database: `omniloop.demo.brand` turns it into rows through the services.
Everything here is fixed, so the demo is identical on every machine and every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from omniloop.tenancy.models import Role

SLUG = "beanhouse"
NAME = "豆留咖啡 Bean House Coffee"
CURRENCY = "TWD"
TIMEZONE = "Asia/Taipei"
LOCALE = "zh_TW"
# Shared by every demo account and printed by `omniloop demo`: a demo login, not a secret.
PASSWORD = "demo-1234!"
EMAIL_DOMAIN = "beanhouse.demo"

Hours = dict[str, list[dict[str, str]]]


def _hours(weekday: str | None, saturday: str | None, sunday: str | None,
           **overrides: str | None) -> Hours:
    """Opening hours from 'HH:MM-HH:MM' per kind of day; None means closed that day."""
    days = {"mon": weekday, "tue": weekday, "wed": weekday, "thu": weekday, "fri": weekday,
            "sat": saturday, "sun": sunday}
    days.update(overrides)
    result: Hours = {}
    for day, span in days.items():
        if span is None:
            result[day] = []
        else:
            opening, closing = span.split("-")
            result[day] = [{"open": opening, "close": closing}]
    return result


@dataclass(frozen=True)
class StoreSpec:
    code: str
    name: str
    address: str
    latitude: float
    longitude: float
    phone: str
    opening_hours: Hours


STORES: tuple[StoreSpec, ...] = (
    StoreSpec("TPE-XINYI", "信義松仁店", "110 台北市信義區松仁路 100 號 1 樓",
              25.0358, 121.5683, "02-2722-3168",
              _hours("07:30-21:00", "09:00-22:00", "09:00-22:00")),
    StoreSpec("TPE-DAAN", "大安敦南店", "106 台北市大安區敦化南路一段 187 巷 22 號",
              25.0413, 121.5493, "02-2711-5062",
              _hours("08:00-22:00", "09:00-22:30", "09:00-22:00")),
    StoreSpec("TPE-ZHONGSHAN", "中山南西店", "104 台北市中山區南京西路 18 巷 6 弄 3 號",
              25.0529, 121.5204, "02-2521-7730",
              _hours("08:00-21:30", "09:00-22:30", "09:00-21:00", fri="08:00-22:30")),
    StoreSpec("TPE-SONGSHAN", "松山民生店", "105 台北市松山區民生東路四段 56 巷 10 號",
              25.0586, 121.5521, "02-2545-1984",
              _hours("07:00-19:00", "09:00-18:00", "09:00-18:00")),
    StoreSpec("TPE-NEIHU", "內湖瑞光店", "114 台北市內湖區瑞光路 399 號 1 樓",
              25.0786, 121.5748, "02-2656-0315",
              _hours("07:00-19:30", "09:00-17:00", None)),
    StoreSpec("NTP-BANQIAO", "板橋府中店", "220 新北市板橋區府中路 29 號",
              25.0087, 121.4593, "02-2960-8826",
              _hours("08:00-21:00", "09:00-21:30", "09:00-21:30")),
    StoreSpec("NTP-XINDIAN", "新店七張店", "231 新北市新店區北新路二段 170 號",
              24.9755, 121.5428, "02-2918-4407",
              _hours("07:30-20:00", "08:30-20:30", "08:30-20:30")),
    StoreSpec("NTP-TAMSUI", "淡水老街店", "251 新北市淡水區中正路 135 號",
              25.1702, 121.4397, "02-2629-5521",
              _hours("11:00-20:00", "10:00-21:30", "10:00-21:30", mon=None)),
)


@dataclass(frozen=True)
class StaffSpec:
    email: str
    name: str
    role: Role
    store_codes: tuple[str, ...] = ()


def _email(local: str) -> str:
    return f"{local}@{EMAIL_DOMAIN}"


STAFF: tuple[StaffSpec, ...] = (
    StaffSpec(_email("owner"), "林雅婷", Role.owner),
    StaffSpec(_email("marketer"), "陳冠宇", Role.marketer),
    StaffSpec(_email("manager"), "王怡君", Role.store_manager, ("TPE-XINYI", "TPE-DAAN")),
    StaffSpec(_email("cashier.xinyi"), "張家豪", Role.cashier, ("TPE-XINYI",)),
    StaffSpec(_email("cashier.daan"), "李佳穎", Role.cashier, ("TPE-DAAN",)),
    StaffSpec(_email("cashier.zhongshan"), "黃柏翰", Role.cashier, ("TPE-ZHONGSHAN",)),
    StaffSpec(_email("cashier.songshan"), "吳宜蓁", Role.cashier, ("TPE-SONGSHAN",)),
    StaffSpec(_email("cashier.neihu"), "劉承恩", Role.cashier, ("TPE-NEIHU",)),
    StaffSpec(_email("cashier.banqiao"), "蔡佩珊", Role.cashier, ("NTP-BANQIAO",)),
    StaffSpec(_email("cashier.xindian"), "楊子軒", Role.cashier, ("NTP-XINDIAN",)),
    StaffSpec(_email("cashier.tamsui"), "許雅筑", Role.cashier, ("NTP-TAMSUI",)),
)


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    category: str
    price: int  # whole New Taiwan dollars, as on the menu board
    active: bool = True


PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec("CF-AMERICANO", "美式咖啡", "咖啡", 100),
    ProductSpec("CF-LATTE", "拿鐵", "咖啡", 130),
    ProductSpec("CF-CAPPUCCINO", "卡布奇諾", "咖啡", 130),
    ProductSpec("CF-FLATWHITE", "馥列白", "咖啡", 140),
    ProductSpec("CF-OAT-LATTE", "燕麥拿鐵", "咖啡", 150),
    ProductSpec("CF-CARAMEL-MAC", "焦糖瑪奇朵", "咖啡", 150),
    ProductSpec("CF-COLDBREW", "冰釀冷萃咖啡", "咖啡", 140),
    ProductSpec("CF-POUROVER", "今日手沖單品", "咖啡", 180),
    ProductSpec("CF-OSMANTHUS", "桂花拿鐵（秋季限定）", "咖啡", 160, active=False),
    ProductSpec("TEA-CEYLON", "錫蘭紅茶", "茶飲", 90),
    ProductSpec("TEA-ORIENTAL", "東方美人茶", "茶飲", 120),
    ProductSpec("TEA-MATCHA-LATTE", "抹茶拿鐵", "茶飲", 140),
    ProductSpec("TEA-HONEY-LATTE", "蜜香紅茶拿鐵", "茶飲", 130),
    ProductSpec("TEA-LEMON-SPARK", "檸檬氣泡冷泡茶", "茶飲", 120),
    ProductSpec("FD-HAM-CROISSANT", "火腿起司可頌", "輕食", 95),
    ProductSpec("FD-CLUB", "總匯三明治", "輕食", 110),
    ProductSpec("FD-CAESAR", "雞肉凱撒沙拉", "輕食", 160),
    ProductSpec("FD-TUNA-BAGEL", "鮪魚蛋貝果", "輕食", 90),
    ProductSpec("FD-QUICHE", "法式鹹派", "輕食", 120),
    ProductSpec("DS-BASQUE", "巴斯克乳酪蛋糕", "甜點", 130),
    ProductSpec("DS-TIRAMISU", "提拉米蘇", "甜點", 140),
    ProductSpec("DS-LEMON-TART", "檸檬塔", "甜點", 120),
    ProductSpec("DS-CINNAMON", "肉桂捲", "甜點", 85),
    ProductSpec("DS-CANELE", "可麗露", "甜點", 75),
    ProductSpec("BN-YIRGA-227", "衣索比亞 耶加雪菲 淺焙 半磅", "咖啡豆", 520),
    ProductSpec("BN-HUILA-227", "哥倫比亞 慧蘭 中焙 半磅", "咖啡豆", 450),
    ProductSpec("BN-HOUSE-227", "豆留招牌綜合豆 中深焙 半磅", "咖啡豆", 380),
    ProductSpec("BN-ALISHAN-227", "台灣阿里山咖啡豆 半磅", "咖啡豆", 880),
    ProductSpec("GD-TUMBLER", "豆留隨行杯 473ml", "周邊商品", 480),
    ProductSpec("GD-MUG", "陶瓷馬克杯", "周邊商品", 380),
    ProductSpec("GD-DRIP-SET", "手沖濾杯組", "周邊商品", 980),
)
