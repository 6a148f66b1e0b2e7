"""The operators' dashboard at /admin: server-rendered pages over the same service functions
as the JSON operator API, with a cookie session, CSRF tokens and HTML error pages."""
