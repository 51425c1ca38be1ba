"""The order state machine (after NautilusTrader's `OrderStatus` FSM): every state, every legal transition.

Django-free on purpose: the risk manager, the paper broker and reconciliation reason about states without the ORM.
A transition is legal when it is in `TRANSITIONS`; anything else is refused with `IllegalTransition`.

    created ─► submitted ─► accepted ─► partially_filled ─► filled
        │          │            │               │
        │          └──► rejected└──► pending_cancel ─► canceled / expired
        └──► unknown (an outcome we could not confirm; resolved by a REST query or reconciliation)

Exchange facts may arrive out of order (a trade before the `new`), so the exchange may move an order forward past
states we never saw (created → partially_filled). A fill the exchange reports for an order we had as canceled or
expired is applied; when it completes the quantity the order becomes filled (canceled → filled), otherwise it stays
canceled with the fill recorded.
"""

from __future__ import annotations

from enum import StrEnum


class OrderState(StrEnum):
    CREATED = "created"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(s.value, s.value.replace("_", " ")) for s in cls]


S = OrderState

TERMINAL: frozenset[OrderState] = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
OPEN: frozenset[OrderState] = frozenset(set(S) - TERMINAL - {S.CREATED})

TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.CREATED: frozenset(
        {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.UNKNOWN}
    ),
    S.SUBMITTED: frozenset(
        {S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.REJECTED, S.EXPIRED, S.UNKNOWN}
    ),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, S.UNKNOWN}),
    # A cancel request the exchange refused returns the order to where it was (accepted or partially filled).
    S.PENDING_CANCEL: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED, S.UNKNOWN}),
    S.UNKNOWN: frozenset(
        {S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.REJECTED, S.EXPIRED}
    ),
    # The exchange is the truth: a late fill that completes a canceled or expired order makes it filled.
    S.CANCELED: frozenset({S.FILLED}),
    S.EXPIRED: frozenset({S.FILLED}),
    S.FILLED: frozenset(),
    S.REJECTED: frozenset(),
}

# How far along an order is; an exchange status that would move an order backwards is stale (an out-of-order
# message), not an error. Terminal states share the top rank.
RANK: dict[OrderState, int] = {
    S.CREATED: 0,
    S.UNKNOWN: 1,
    S.SUBMITTED: 2,
    S.ACCEPTED: 3,
    S.PARTIALLY_FILLED: 4,
    S.PENDING_CANCEL: 4,
    S.FILLED: 9,
    S.CANCELED: 9,
    S.REJECTED: 9,
    S.EXPIRED: 9,
}


class IllegalTransition(Exception):
    def __init__(self, from_state: OrderState, to_state: OrderState):
        super().__init__(f"illegal order transition {from_state} -> {to_state}")
        self.from_state = from_state
        self.to_state = to_state


def can_transition(from_state: OrderState | str, to_state: OrderState | str) -> bool:
    return OrderState(to_state) in TRANSITIONS[OrderState(from_state)]


def check_transition(from_state: OrderState | str, to_state: OrderState | str) -> None:
    if not can_transition(from_state, to_state):
        raise IllegalTransition(OrderState(from_state), OrderState(to_state))


def is_stale(current: OrderState | str, proposed: OrderState | str) -> bool:
    """True when `proposed` is behind `current` (e.g. a `new` arriving after a trade): ignore, don't refuse."""
    return RANK[OrderState(proposed)] < RANK[OrderState(current)] or (
        OrderState(current) in TERMINAL and OrderState(proposed) != OrderState.FILLED
    )
