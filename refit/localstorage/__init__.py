"""Moving sellers off browser storage (issue 14): the browser app's export format
(schemas.py), its validation with the place of every problem (validation.py), the batched,
idempotent importer (importer.py), the operator's `refit import-localstorage` (cli.py) and
the seller's own upload, `POST /api/migrate/localstorage` (endpoints.py).

Format: docs/localstorage-export.md. Orders are written through `refit.orders.imported`, the
orders domain's door for imported history (status `imported`: nothing ships, inspects or pays
it; its seller continues an open one as a new order).
"""
