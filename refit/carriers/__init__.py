"""The carriers: what is a shipping provider's and not our rules. The interface (interface.py),
the one place that picks a carrier (picker.py), Shippo over its REST API (shippo/: the HTTP
client apart from the wire format) and the built-in sandbox (sandbox/: rates, labels, PDF,
webhooks).

Shipping imports `interface` and `picker`, nothing else of here; nothing here imports
`refit.shipping`."""
