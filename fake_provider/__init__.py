"""The fake payment provider's parts; `fake_payment_server.py` is its entry (`create_app`).

    wire.py      requests in (strict JSON, field by field) and answers out (JSON errors)
    faults.py    the fault kinds, the queue, the seeded random mode, dropping a connection
    state.py     what one provider remembers: cards, ledgers, idempotency stores, journal
    routes.py    the HTTP endpoints (a Flask blueprint)

The protocol is docs/payment-provider.md; the rules in short are in the docstring of
`fake_payment_server`.
"""
