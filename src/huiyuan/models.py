"""Imports every model module so ``Base.metadata`` is complete (Alembic, tests)."""

from huiyuan.audit import models as audit_models  # noqa: F401
from huiyuan.auth import models as auth_models  # noqa: F401
from huiyuan.benefits import card_models as benefit_card_models  # noqa: F401
from huiyuan.benefits import models as benefit_models  # noqa: F401
from huiyuan.coupons import models as coupon_models  # noqa: F401
from huiyuan.events import models as event_models  # noqa: F401
from huiyuan.identity import models as identity_models  # noqa: F401
from huiyuan.jobs import models as jobs_models  # noqa: F401
from huiyuan.kit import idempotency as idempotency_models  # noqa: F401
from huiyuan.kit.db import Base
from huiyuan.members import models as member_models  # noqa: F401
from huiyuan.orders import models as order_models  # noqa: F401
from huiyuan.outbox import models as outbox_models  # noqa: F401
from huiyuan.paid import models as paid_models  # noqa: F401
from huiyuan.points import mall_models  # noqa: F401
from huiyuan.points import merchant_models as point_merchant_models  # noqa: F401
from huiyuan.points import models as points_models  # noqa: F401
from huiyuan.points import program_models as point_program_models  # noqa: F401
from huiyuan.tenancy import models as tenancy_models  # noqa: F401
from huiyuan.tiers import models as tier_models  # noqa: F401
from huiyuan.wallet import models as wallet_models  # noqa: F401

metadata = Base.metadata
