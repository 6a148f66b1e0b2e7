"""Sanctions screening: OFAC's SDN list (its Solana addresses) and the check every payout's
recipient goes through before signing (service.screen)."""
