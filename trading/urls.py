from django.urls import path

from trading.apis import BalanceListApi, FillListApi, OrderDetailApi, OrderListApi, PositionListApi, TradingStateApi

app_name = "trading"

urlpatterns = [
    path("orders/", OrderListApi.as_view(), name="order-list"),
    path("orders/<int:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("fills/", FillListApi.as_view(), name="fill-list"),
    path("positions/", PositionListApi.as_view(), name="position-list"),
    path("balances/", BalanceListApi.as_view(), name="balance-list"),
    path("state/", TradingStateApi.as_view(), name="state"),
]
