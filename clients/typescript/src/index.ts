// The ReFit API's typed client: paths, bodies and answers come from src/schema.d.ts, which is
// generated from the API's OpenAPI document (`make client`); `make test` fails when it is stale.
import createClient, { type Middleware } from "openapi-fetch";

import type { components, paths } from "./schema";

export type { components, operations, paths } from "./schema";
export type Problem = components["schemas"]["Problem"];

export interface ClientOptions {
  baseUrl: string;
  /** The seller's (or operator's) access token, read before every request. */
  token?: () => string | undefined;
}

export function createRefitClient({ baseUrl, token }: ClientOptions) {
  const client = createClient<paths>({ baseUrl });
  const bearer: Middleware = {
    onRequest({ request }) {
      const value = token?.();
      if (value) request.headers.set("Authorization", `Bearer ${value}`);
      return request;
    },
  };
  client.use(bearer);
  return client;
}
