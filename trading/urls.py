from django.urls import path

from trading.apis import (
    AlertListApi,
    BalanceListApi,
    DecisionListApi,
    FillListApi,
    OrderCancelAllApi,
    OrderCancelApi,
    OrderCreateApi,
    OrderDetailApi,
    OrderListApi,
    PositionListApi,
    RiskLimitListApi,
    RiskLimitUpdateApi,
    TradingHaltApi,
    TradingReduceApi,
    TradingResumeApi,
    TradingStateApi,
)
from trading.performance_apis import EquityApi, PnlApi

app_name = "trading"

urlpatterns = [
    path("orders/", OrderListApi.as_view(), name="order-list"),
    path("orders/create/", OrderCreateApi.as_view(), name="order-create"),
    path("orders/cancel-all/", OrderCancelAllApi.as_view(), name="order-cancel-all"),
    path("orders/<int:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel/", OrderCancelApi.as_view(), name="order-cancel"),
    path("fills/", FillListApi.as_view(), name="fill-list"),
    path("decisions/", DecisionListApi.as_view(), name="decision-list"),
    path("positions/", PositionListApi.as_view(), name="position-list"),
    path("balances/", BalanceListApi.as_view(), name="balance-list"),
    path("state/", TradingStateApi.as_view(), name="state"),
    path("state/halt/", TradingHaltApi.as_view(), name="state-halt"),
    path("state/reduce/", TradingReduceApi.as_view(), name="state-reduce"),
    path("state/resume/", TradingResumeApi.as_view(), name="state-resume"),
    path("risk-limits/", RiskLimitListApi.as_view(), name="risk-limit-list"),
    path("risk-limits/update/", RiskLimitUpdateApi.as_view(), name="risk-limit-update"),
    path("alerts/", AlertListApi.as_view(), name="alert-list"),
    path("equity/", EquityApi.as_view(), name="equity"),
    path("pnl/", PnlApi.as_view(), name="pnl"),
]
