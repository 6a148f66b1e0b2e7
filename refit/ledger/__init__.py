"""A local Solana ledger: LiteSVM behind a real JSON-RPC endpoint, for the embedded default and
the tests. The payout's code talks to it with solana-py exactly as it talks to a cluster."""
