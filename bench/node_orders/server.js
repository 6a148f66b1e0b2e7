// The bench's Node peer: GET /api/orders/:id the way the architecture plan's own stack would
// serve it, with nothing but Node's `http` module and node-postgres, so that `make bench` can
// put a number on what ReFit's read costs against it (same database, same cores, same token).
//
// Per request: the bearer token (HS256, the secret ReFit signs with) is checked here, then five
// round trips on one pooled connection: BEGIN; SET LOCAL ROLE authenticated; the claims into
// request.jwt.claims; SELECT * FROM orders WHERE id = $1 (the orders_select_own policy decides
// what a seller sees, as it does for ReFit); COMMIT. The answer is the order's columns a seller
// sees, written as ReFit writes them (its OrderRead), and errors are problem+json as ReFit's.
//
//   DATABASE_URL=postgresql://...  PEER_JWT_SECRET=<REFIT_JWT_SECRET>  node server.js
//   PORT (8091), WORKERS (2 processes, Node's cluster), POOL (10 connections per process)
'use strict';

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const http = require('node:http');
const pg = require('pg');

const PORT = Number(process.env.PORT || 8091);
const WORKERS = Number(process.env.WORKERS || 2);
const POOL = Number(process.env.POOL || 10);
const SECRET = process.env.PEER_JWT_SECRET || '';

// ReFit's OrderRead, in its order: every column of `orders` a seller may see. The others
// (label_file_key, attention_reason, ...) are the operators' and stay out of the answer.
const ORDER_FIELDS = [
  'id', 'order_number', 'user_id', 'status', 'quote_id', 'device_brand', 'device_model',
  'device_storage', 'device_category', 'device_condition', 'device_details',
  'quoted_price_usd', 'quoted_price_sol', 'quoted_price_lamports', 'final_price_usd',
  'final_price_sol', 'shipping_address_id', 'shipping_rate_id', 'shipping_carrier',
  'shipping_service', 'shipping_cost', 'tracking_number', 'label_url', 'label_error',
  'label_purchased_at', 'escrow_pubkey', 'payment_tx_signature', 'offer_expires_at',
  'offer_accepted_at', 'created_at', 'updated_at', 'shipped_at', 'received_at',
  'completed_at', 'cancelled_at', 'imported_status', 'continued_as_id',
];
const ORDER_PATH = /^\/api\/orders\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

if (!SECRET) {
  console.error('PEER_JWT_SECRET is not set: no token could be verified');
  process.exit(2);
}

function supervise() {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let stopping = false;
  // A process lost mid-run would halve the peer's capacity unseen: the peer stops instead,
  // and the bench (which watches it) reports it.
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`node peer: worker ${worker.process.pid} exited (${signal || code}); stopping`);
    stopping = true;
    for (const other of Object.values(cluster.workers)) other.kill();
    process.exitCode = 1;
  });
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      stopping = true;
      for (const worker of Object.values(cluster.workers)) worker.kill();
    });
  }
}

// --- the database --------------------------------------------------------------------------

// Values written the way ReFit's pydantic models write them, so both answers compare equal:
// timestamps as ISO 8601 in UTC with microseconds (the session's TimeZone is UTC, below),
// bigint as a JSON number. numeric stays the exact decimal text node-postgres gives already.
function isoUtc(text) {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/.exec(text);
  if (!m) return text;
  return `${m[1]}T${m[2]}${m[3] ? '.' + m[3].padEnd(6, '0') : ''}Z`;
}
function int8(text) {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}
const TIMESTAMPTZ = 1184;
const INT8 = 20;
const types = {
  getTypeParser(oid, format) {
    if (format !== 'binary' && oid === TIMESTAMPTZ) return isoUtc;
    if (format !== 'binary' && oid === INT8) return int8;
    return pg.types.getTypeParser(oid, format);
  },
};

function serve() {
  const pool = new pg.Pool({
    connectionString: process.env.DATABASE_URL,
    max: POOL,
    // A startup parameter, not a statement: no round trip more per request.
    options: '-c TimeZone=UTC',
    types,
  });
  // An idle pooled connection that PostgreSQL drops is an error event on the pool: without a
  // listener it would end the process.
  pool.on('error', (err) => console.error(`node peer: idle connection lost: ${err.message}`));

  const server = http.createServer((req, res) => {
    handle(pool, req, res).catch((err) => {
      console.error(`node peer: ${err.stack || err}`);
      if (!res.headersSent) problem(res, 500, 'internal_error', 'Something went wrong on our side');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(PORT, '127.0.0.1');

  process.on('SIGTERM', () => {
    server.close();
    server.closeIdleConnections();
    pool.end().finally(() => process.exit(0));
  });
}

async function handle(pool, req, res) {
  const path = req.url.split('?', 1)[0];
  const match = ORDER_PATH.exec(path);
  if (!match) return problem(res, 404, 'not_found', `No resource at ${path}`);
  if (req.method !== 'GET') {
    return problem(res, 405, 'method_not_allowed', 'Method Not Allowed', { Allow: 'GET' });
  }
  const header = req.headers.authorization || '';
  if (!/^Bearer /i.test(header)) {
    return problem(res, 401, 'no_token', 'Sign in first: send Authorization: Bearer <token>', {
      'WWW-Authenticate': 'Bearer',
    });
  }
  const claims = verify(header.slice(7).trim());
  if (claims === EXPIRED) {
    return problem(res, 401, 'token_expired', 'The access token has expired', {
      'WWW-Authenticate': 'Bearer',
    });
  }
  if (!claims) {
    return problem(res, 401, 'invalid_token', 'The access token is not valid', {
      'WWW-Authenticate': 'Bearer',
    });
  }

  const orderId = match[1];
  let client;
  try {
    client = await pool.connect();
  } catch (err) {
    return unavailable(res, err);
  }
  let rows;
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL ROLE authenticated');
    await client.query("SELECT set_config('request.jwt.claims', $1, true)", [JSON.stringify(claims)]);
    ({ rows } = await client.query('SELECT * FROM orders WHERE id = $1', [orderId]));
    await client.query('COMMIT');
    client.release();
  } catch (err) {
    // A connection whose transaction failed midway is closed, not put back in the pool.
    client.release(err);
    if (isOutage(err)) return unavailable(res, err);
    throw err;
  }
  // Another seller's order is invisible under RLS: the same 404 as an order that does not exist.
  if (rows.length === 0) return problem(res, 404, 'order_not_found', `No order ${orderId}`);
  const order = {};
  for (const field of ORDER_FIELDS) order[field] = rows[0][field];
  const body = JSON.stringify(order);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

// --- the token -----------------------------------------------------------------------------

function base64url(text) {
  return Buffer.from(text, 'base64url');
}

const EXPIRED = Symbol('expired');

// The claims of a token ReFit would accept for a seller (HS256 over the shared secret,
// audience and role `authenticated`, a subject, not expired), EXPIRED for one whose time is
// up, else null. Unlike ReFit the peer keeps no cache of verified tokens: the HMAC is computed
// on every request.
function verify(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const [head, payload, signature] = parts;
  let header;
  let claims;
  try {
    header = JSON.parse(base64url(head).toString('utf8'));
    claims = JSON.parse(base64url(payload).toString('utf8'));
  } catch {
    return null;
  }
  // The algorithm is ours to decide, never the token's ("none", or RS256 keyed by the secret).
  if (!header || header.alg !== 'HS256') return null;
  const expected = crypto.createHmac('sha256', SECRET).update(`${head}.${payload}`).digest();
  const given = base64url(signature);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  if (!claims || typeof claims.sub !== 'string' || claims.role !== 'authenticated') return null;
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes('authenticated')) return null;
  if (typeof claims.exp !== 'number') return null;
  return claims.exp <= Date.now() / 1000 ? EXPIRED : claims;
}

// --- answers -------------------------------------------------------------------------------

const PHRASES = http.STATUS_CODES;

function problem(res, status, code, detail, headers = {}) {
  const body = JSON.stringify({
    type: `https://refit.dev/problems/${code}`,
    title: PHRASES[status],
    status,
    detail,
    code,
  });
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

// The database not answering (a dropped socket, a server shutting down or refusing
// connections): 503 and a moment to wait, as ReFit answers. Any other SQL error is a bug: 500.
function isOutage(err) {
  if (!(err instanceof pg.DatabaseError)) return true;
  return /^(08|57P)/.test(err.code);
}

function unavailable(res, err) {
  console.error(`node peer: database not answering: ${err.message}`);
  return problem(
    res,
    503,
    'dependency_unavailable',
    'A service we depend on is not answering; try again shortly',
    { 'Retry-After': '2' },
  );
}

if (cluster.isPrimary && WORKERS > 1) {
  supervise();
} else {
  serve();
}
