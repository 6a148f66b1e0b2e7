"""The operators' view of orders across the domains: the order search, the list and the whole
story of one order (order, inspection, payout, shipping), read once for the API and the
dashboard; and an admin's cancel. Above inspection, payouts and shipping; none imports it."""
