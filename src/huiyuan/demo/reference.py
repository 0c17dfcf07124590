"""Fixed reference data of the demo world: the three brands and how their customers behave, real
Chinese cities and shopping centres, category trees with product vocabularies and price ranges.
Data only; no randomness and no database access here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Leaf:
    """A leaf category: code, name, product nouns, (min, max) list price in yuan, variant suffixes."""

    code: str
    name: str
    nouns: tuple[str, ...]
    price: tuple[int, int]
    variants: tuple[str, ...] = ("",)
    cents: int = 0  # price ending in fen, e.g. 90 for "39.90"


@dataclass(frozen=True)
class Branch:
    code: str
    name: str
    leaves: tuple[Leaf, ...]


@dataclass(frozen=True)
class BrandProfile:
    code: str
    name: str
    prefix: str
    kind: str
    member_share: float
    orders_per_member: float  # over 24 months, for an average buyer
    refund_rate: float
    female_share: float
    age: tuple[int, int]  # typical age range of members
    stores: int
    # (channel, weight) of orders; "store" orders happen in a store, the rest online.
    order_channels: tuple[tuple[str, int], ...]
    # (channel, weight) of enrollments.
    enroll_channels: tuple[tuple[str, int], ...]
    basket: tuple[int, ...]  # weights for 1, 2, 3 … lines per order
    hours: tuple[int, ...]  # 24 weights of the local hour an order is paid
    weekend: float  # weekend multiplier of daily volume
    product_brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    tree: tuple[Branch, ...] = field(default_factory=tuple)
    skus: int = 600  # target number of SKUs


# (code, province, city, weight): real cities, weight ~ retail size.
CITIES: tuple[tuple[str, str, str, int], ...] = (
    ("sh", "上海市", "上海市", 16),
    ("bj", "北京市", "北京市", 14),
    ("gz", "广东省", "广州市", 10),
    ("sz", "广东省", "深圳市", 10),
    ("hz", "浙江省", "杭州市", 8),
    ("cd", "四川省", "成都市", 8),
    ("cq", "重庆市", "重庆市", 6),
    ("nj", "江苏省", "南京市", 6),
    ("su", "江苏省", "苏州市", 6),
    ("wh", "湖北省", "武汉市", 6),
    ("xa", "陕西省", "西安市", 5),
    ("cs", "湖南省", "长沙市", 5),
    ("tj", "天津市", "天津市", 5),
    ("zz", "河南省", "郑州市", 4),
    ("qd", "山东省", "青岛市", 4),
    ("jn", "山东省", "济南市", 3),
    ("xm", "福建省", "厦门市", 3),
    ("fz", "福建省", "福州市", 3),
    ("nb", "浙江省", "宁波市", 3),
    ("hf", "安徽省", "合肥市", 3),
    ("sy", "辽宁省", "沈阳市", 3),
    ("dl", "辽宁省", "大连市", 2),
    ("km", "云南省", "昆明市", 2),
    ("wx", "江苏省", "无锡市", 2),
    ("dg", "广东省", "东莞市", 2),
    ("fs", "广东省", "佛山市", 2),
    ("heb", "黑龙江省", "哈尔滨市", 2),
    ("cc", "吉林省", "长春市", 2),
    ("nc", "江西省", "南昌市", 2),
    ("nn", "广西壮族自治区", "南宁市", 2),
    ("gy", "贵州省", "贵阳市", 1),
    ("ty", "山西省", "太原市", 1),
    ("sjz", "河北省", "石家庄市", 1),
    ("hk", "海南省", "海口市", 1),
    ("wlmq", "新疆维吾尔自治区", "乌鲁木齐市", 1),
    ("lz", "甘肃省", "兰州市", 1),
)

# Shopping centres by city code; stores are opened in them in this order.
MALLS: dict[str, tuple[str, ...]] = {
    "sh": ("静安嘉里中心", "环球港", "来福士广场", "百联世纪购物中心"),
    "bj": ("三里屯太古里", "国贸商城", "西单大悦城", "朝阳大悦城"),
    "gz": ("天河城", "太古汇", "正佳广场"),
    "sz": ("万象城", "海岸城", "COCO Park"),
    "hz": ("湖滨银泰in77", "杭州大厦", "西溪印象城"),
    "cd": ("远洋太古里", "IFS国际金融中心", "万象城"),
    "cq": ("解放碑时代广场", "观音桥大融城"),
    "nj": ("德基广场", "新街口中央商场"),
    "su": ("苏州中心", "圆融时代广场"),
    "wh": ("楚河汉街", "武汉天地"),
    "xa": ("赛格国际购物中心", "大悦城"),
    "cs": ("IFS国金中心", "五一广场"),
    "tj": ("恒隆广场", "大悦城"),
    "zz": ("正弘城",),
    "qd": ("万象城",),
    "xm": ("万象城",),
    "nb": ("天一广场",),
    "hf": ("银泰中心",),
}

SPRING_FESTIVAL: dict[int, tuple[int, int]] = {
    2020: (1, 25),
    2021: (2, 12),
    2022: (2, 1),
    2023: (1, 22),
    2024: (2, 10),
    2025: (1, 29),
    2026: (2, 17),
    2027: (2, 6),
    2028: (1, 26),
    2029: (2, 13),
    2030: (2, 3),
    2031: (1, 23),
    2032: (2, 11),
    2033: (1, 31),
    2034: (2, 19),
    2035: (2, 8),
}

OCCUPATIONS = ("白领", "教师", "医生", "工程师", "设计师", "学生", "公务员", "自由职业", "销售", "个体经营")
EDUCATIONS = ("高中", "大专", "本科", "硕士", "博士")
INCOME_BANDS = ("<5k", "5k-10k", "10k-20k", "20k-50k", ">50k")
INTERESTS = ("旅行", "健身", "美食", "阅读", "摄影", "音乐", "电影", "户外", "宠物", "瑜伽", "咖啡", "烘焙")
EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "foxmail.com", "sina.com", "outlook.com", "gmail.com")
REFUND_REASONS = ("尺码不合适", "质量问题", "不想要了", "与描述不符", "重复下单", "发错货")

_SIZES = ("S", "M", "L", "XL")
_CUPS = ("中杯", "大杯", "超大杯")

APPAREL = BrandProfile(
    code="lanxi",
    name="兰溪服饰",
    prefix="LX",
    kind="apparel",
    member_share=0.40,
    orders_per_member=6.0,
    refund_rate=0.06,
    female_share=0.68,
    age=(22, 50),
    stores=12,
    order_channels=(("store", 58), ("tmall", 14), ("mini_program", 14), ("jd", 5), ("douyin", 5), ("web", 4)),
    enroll_channels=(
        ("store", 45),
        ("mini_program", 28),
        ("app", 5),
        ("web", 4),
        ("douyin", 7),
        ("payment", 6),
        ("referral", 4),
        ("e_invoice", 1),
    ),
    basket=(50, 30, 13, 5, 2),
    hours=(1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 5, 7, 8, 8, 9, 10, 10, 10, 11, 12, 12, 10, 6, 3),
    weekend=1.45,
    product_brands=("兰溪", "兰溪 LAB", "兰溪童装"),
    adjectives=(
        "简约",
        "法式",
        "复古",
        "通勤",
        "休闲",
        "宽松",
        "修身",
        "轻薄",
        "印花",
        "条纹",
        "纯色",
        "格纹",
    ),
    skus=800,
    tree=(
        Branch(
            "women",
            "女装",
            (
                Leaf("w-dress", "连衣裙", ("连衣裙", "衬衫裙", "针织裙"), (299, 899), _SIZES),
                Leaf("w-shirt", "衬衫", ("衬衫", "雪纺衫", "真丝衬衫"), (199, 599), _SIZES),
                Leaf("w-knit", "针织衫", ("开衫", "毛衣", "针织背心"), (259, 799), _SIZES),
                Leaf("w-coat", "外套", ("风衣", "西装外套", "羽绒服", "大衣"), (499, 1999), _SIZES),
                Leaf("w-pants", "裤装", ("阔腿裤", "牛仔裤", "西裤"), (229, 599), _SIZES),
            ),
        ),
        Branch(
            "men",
            "男装",
            (
                Leaf("m-tee", "T恤", ("T恤", "POLO衫"), (99, 299), _SIZES),
                Leaf("m-shirt", "衬衫", ("牛津纺衬衫", "商务衬衫"), (199, 499), _SIZES),
                Leaf("m-jacket", "夹克", ("夹克", "羽绒服", "棉服"), (399, 1599), _SIZES),
                Leaf("m-pants", "裤装", ("休闲裤", "牛仔裤", "西裤"), (199, 599), _SIZES),
            ),
        ),
        Branch(
            "kids",
            "童装",
            (
                Leaf("k-top", "上装", ("卫衣", "T恤", "外套"), (99, 399), ("110", "120", "130", "140")),
                Leaf("k-bottom", "下装", ("运动裤", "半身裙"), (89, 259), ("110", "120", "130", "140")),
            ),
        ),
        Branch(
            "acc",
            "配饰",
            (
                Leaf("a-scarf", "围巾", ("羊毛围巾", "真丝丝巾"), (129, 499)),
                Leaf("a-bag", "包袋", ("托特包", "斜挎包", "帆布包"), (199, 899)),
                Leaf("a-hat", "帽子", ("棒球帽", "渔夫帽", "针织帽"), (79, 199)),
            ),
        ),
    ),
)

COFFEE = BrandProfile(
    code="mucha",
    name="木茶咖啡",
    prefix="MC",
    kind="coffee",
    member_share=0.35,
    orders_per_member=16.0,
    refund_rate=0.015,
    female_share=0.55,
    age=(20, 42),
    stores=12,
    order_channels=(("store", 62), ("mini_program", 32), ("app", 6)),
    enroll_channels=(("mini_program", 55), ("store", 25), ("app", 10), ("payment", 6), ("referral", 4)),
    basket=(62, 28, 8, 2),
    hours=(0, 0, 0, 0, 0, 0, 1, 6, 14, 14, 10, 7, 6, 7, 9, 9, 7, 5, 4, 3, 2, 1, 1, 0),
    weekend=0.85,
    product_brands=("木茶", "木茶烘焙坊", "木茶臻选"),
    adjectives=("经典", "燕麦", "生椰", "焦糖", "桂花", "海盐", "榛果", "香草", "抹茶", "黑糖"),
    skus=400,
    tree=(
        Branch(
            "coffee",
            "咖啡",
            (
                Leaf("c-classic", "经典咖啡", ("拿铁", "美式", "卡布奇诺", "摩卡", "澳白"), (22, 36), _CUPS),
                Leaf("c-cold", "冷萃", ("冷萃", "冰滴"), (28, 38), _CUPS),
                Leaf("c-pour", "手冲", ("埃塞俄比亚手冲", "哥伦比亚手冲"), (38, 58)),
            ),
        ),
        Branch(
            "tea",
            "茶饮",
            (
                Leaf("t-milk", "奶茶", ("奶茶", "鸳鸯"), (18, 28), _CUPS),
                Leaf("t-fruit", "果茶", ("柠檬茶", "葡萄茶", "桃子茶"), (18, 26), _CUPS),
            ),
        ),
        Branch(
            "bakery",
            "烘焙",
            (
                Leaf("b-bread", "面包", ("可颂", "贝果", "司康"), (12, 26)),
                Leaf("b-cake", "蛋糕", ("芝士蛋糕", "提拉米苏", "巴斯克"), (28, 42)),
            ),
        ),
        Branch(
            "beans",
            "咖啡豆",
            (
                Leaf("bn-single", "单品豆", ("云南保山豆", "耶加雪菲", "曼特宁"), (88, 168), cents=0),
                Leaf("bn-blend", "拼配豆", ("意式拼配", "季节拼配"), (68, 128)),
            ),
        ),
        Branch(
            "merch",
            "周边",
            (
                Leaf("mr-cup", "杯具", ("随行杯", "马克杯", "玻璃杯"), (59, 199)),
                Leaf("mr-gift", "礼盒", ("咖啡礼盒", "挂耳礼盒"), (99, 299)),
            ),
        ),
    ),
)

BEAUTY = BrandProfile(
    code="yunjian",
    name="云间美妆",
    prefix="YJ",
    kind="beauty",
    member_share=0.25,
    orders_per_member=7.0,
    refund_rate=0.04,
    female_share=0.86,
    age=(18, 45),
    stores=6,
    order_channels=(("store", 40), ("tmall", 22), ("douyin", 15), ("mini_program", 18), ("jd", 5)),
    enroll_channels=(
        ("store", 35),
        ("mini_program", 30),
        ("douyin", 15),
        ("app", 8),
        ("web", 6),
        ("referral", 6),
    ),
    basket=(45, 30, 15, 7, 3),
    hours=(2, 1, 0, 0, 0, 0, 0, 1, 2, 4, 6, 7, 8, 8, 8, 9, 9, 9, 10, 11, 12, 12, 8, 4),
    weekend=1.3,
    product_brands=("云间", "初禾", "雪域之光", "花间集", "植本"),
    adjectives=("水润", "修护", "焕亮", "控油", "舒缓", "紧致", "清透", "柔雾", "丝绒", "持久"),
    skus=800,
    tree=(
        Branch(
            "skincare",
            "护肤",
            (
                Leaf("s-cleanser", "洁面", ("洁面乳", "洁面慕斯"), (89, 229), ("100ml", "150ml")),
                Leaf("s-toner", "化妆水", ("精粹水", "爽肤水"), (129, 399), ("150ml", "200ml")),
                Leaf("s-serum", "精华", ("精华液", "安瓶精华"), (299, 1299), ("30ml", "50ml")),
                Leaf("s-cream", "面霜", ("面霜", "乳液", "眼霜"), (199, 1099), ("15g", "50g")),
                Leaf("s-mask", "面膜", ("贴片面膜", "涂抹面膜"), (99, 299), ("5片", "10片")),
                Leaf("s-sun", "防晒", ("防晒乳", "防晒喷雾"), (129, 299), ("30ml", "50ml")),
            ),
        ),
        Branch(
            "makeup",
            "彩妆",
            (
                Leaf("m-lip", "口红", ("唇膏", "唇釉", "唇泥"), (159, 349), ("#01", "#05", "#12", "#21")),
                Leaf("m-base", "底妆", ("粉底液", "气垫", "散粉"), (199, 499), ("象牙白", "自然色")),
                Leaf("m-eye", "眼妆", ("眼影盘", "睫毛膏", "眼线笔"), (99, 459)),
            ),
        ),
        Branch(
            "fragrance",
            "香水",
            (Leaf("f-edp", "香水", ("淡香精", "淡香水"), (399, 1299), ("30ml", "50ml", "100ml")),),
        ),
        Branch(
            "body",
            "个护",
            (
                Leaf("b-hair", "洗护发", ("洗发水", "护发素", "发膜"), (69, 199)),
                Leaf("b-lotion", "身体护理", ("身体乳", "沐浴露", "护手霜"), (59, 259)),
            ),
        ),
        Branch("gift", "礼盒", (Leaf("g-set", "礼盒套装", ("护肤礼盒", "彩妆礼盒"), (399, 1599)),)),
    ),
)

BRANDS: tuple[BrandProfile, ...] = (APPAREL, COFFEE, BEAUTY)
